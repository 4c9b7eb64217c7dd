import type { Client } from 'pg'
import { describe, expect, it, vi } from 'vitest'
import { pgPipeline } from '../../src/dialects/pg-pipeline.js'

// pgPipeline() reads and sets only a few of a pg Client's members: `_sentQueryQueue` (pg 8.23's
// pipeline mode), `pipeline`, `query` and `connection.stream`'s cork/uncork. A plain object with
// those stands in for the client; what it records is what pg would have seen.

interface FakeClient {
  pipeline?: boolean
  _sentQueryQueue?: unknown[]
  query: (...args: unknown[]) => unknown
  connection: { stream: { cork: () => void; uncork: () => void } }
  /** The calls that reached the client's own query(), with their `this`. */
  calls: Array<{ self: unknown; args: unknown[] }>
  /** cork and uncork, in order. */
  writes: string[]
}

/** A client of pg 8.23 or later (with `_sentQueryQueue`), made with `pipeline` as given. */
function client(options: { pipeline?: boolean; old?: boolean } = {}): FakeClient {
  const c: FakeClient = {
    query(...args: unknown[]) {
      c.calls.push({ self: this, args })
      return `result of ${String(args[0])}`
    },
    connection: {
      stream: {
        cork: () => c.writes.push('cork'),
        uncork: () => c.writes.push('uncork'),
      },
    },
    calls: [],
    writes: [],
  }
  if (options.pipeline !== undefined) c.pipeline = options.pipeline
  if (options.old !== true) c._sentQueryQueue = []
  return c
}

function on(c: FakeClient, turnOn: boolean, allowed = true): boolean {
  return pgPipeline(c as unknown as Client, turnOn, allowed)
}

/** Lets process.nextTick callbacks run. */
function nextTick(): Promise<void> {
  return new Promise((resolve) => process.nextTick(resolve))
}

describe('pgPipeline: turning pg pipeline mode on and off', () => {
  it('turns it on, and back off to the setting the client was made with', () => {
    const c = client({ pipeline: false })
    expect(on(c, true)).toBe(true)
    expect(c.pipeline).toBe(true)
    expect(on(c, false)).toBe(false)
    expect(c.pipeline).toBe(false)
    // Again: the original setting is remembered from the first time.
    expect(on(c, true)).toBe(true)
    expect(on(c, false)).toBe(false)
    expect(c.pipeline).toBe(false)
  })

  it('restores pipeline: true on a client its user made pipelining', () => {
    const c = client({ pipeline: true })
    expect(on(c, true)).toBe(true)
    expect(on(c, false)).toBe(false)
    expect(c.pipeline).toBe(true)
  })

  it('a client made without the pipeline setting goes back to false', () => {
    const c = client()
    expect(on(c, true)).toBe(true)
    expect(on(c, false)).toBe(false)
    expect(c.pipeline).toBe(false)
  })

  it('returns false on a pg without pipeline mode (no _sentQueryQueue), and touches nothing', () => {
    const c = client({ old: true })
    const query = c.query
    expect(on(c, true)).toBe(false)
    expect(on(c, false)).toBe(false)
    expect('pipeline' in c).toBe(false)
    expect(c.query).toBe(query)
  })

  it('returns false when not allowed (a pooler that cannot take a pipeline), leaving the client as it was', () => {
    const c = client({ pipeline: false })
    const query = c.query
    expect(on(c, true, false)).toBe(false)
    expect(c.pipeline).toBe(false)
    expect(on(c, false, false)).toBe(false)
    expect(c.pipeline).toBe(false)
    // No write batching either: query() is the client's own.
    expect(c.query).toBe(query)
  })
})

describe('pgPipeline: batching a pipelining client writes per tick', () => {
  it('corks the stream at the first query of a tick, once, and uncorks it on the next tick', async () => {
    const c = client({ pipeline: false })
    on(c, true)
    expect(c.query('SELECT 1', [1])).toBe('result of SELECT 1')
    c.query('SELECT 2')
    c.query('SELECT 3')
    expect(c.writes).toEqual(['cork'])
    // Every query reaches the client's own query(), on the client, with its arguments.
    expect(c.calls.map((call) => call.args)).toEqual([
      ['SELECT 1', [1]],
      ['SELECT 2'],
      ['SELECT 3'],
    ])
    expect(c.calls.every((call) => call.self === c)).toBe(true)
    await nextTick()
    expect(c.writes).toEqual(['cork', 'uncork'])
    // The next tick's burst gets a cork of its own.
    c.query('SELECT 4')
    c.query('SELECT 5')
    expect(c.writes).toEqual(['cork', 'uncork', 'cork'])
    await nextTick()
    expect(c.writes).toEqual(['cork', 'uncork', 'cork', 'uncork'])
  })

  it('does not cork while the client does not pipeline', async () => {
    const c = client({ pipeline: false })
    on(c, true)
    on(c, false)
    c.query('SELECT 1')
    c.query('SELECT 2')
    await nextTick()
    expect(c.writes).toEqual([])
    expect(c.calls).toHaveLength(2)
    // On again: batching again, with the same wrapper (installed once).
    const wrapped = c.query
    on(c, true)
    expect(c.query).toBe(wrapped)
    c.query('SELECT 3')
    await nextTick()
    expect(c.writes).toEqual(['cork', 'uncork'])
    expect(c.calls).toHaveLength(3)
  })

  it('passes errors of the client own query() through, after corking', async () => {
    const c = client({ pipeline: false })
    const failure = new Error('Client was closed and is not queryable')
    const own = vi.fn(() => {
      throw failure
    })
    c.query = own
    on(c, true)
    expect(() => c.query('SELECT 1')).toThrow(failure)
    expect(own).toHaveBeenCalledTimes(1)
    await nextTick()
    // The cork is undone all the same.
    expect(c.writes).toEqual(['cork', 'uncork'])
  })

  it('a client whose stream cannot cork still queries', async () => {
    const c = client({ pipeline: false })
    ;(c.connection as { stream: unknown }).stream = {}
    on(c, true)
    expect(c.query('SELECT 1')).toBe('result of SELECT 1')
    await nextTick()
    expect(c.calls).toHaveLength(1)
  })

  it('two clients cork their own streams', async () => {
    const a = client({ pipeline: false })
    const b = client({ pipeline: false })
    on(a, true)
    on(b, true)
    a.query('SELECT 1')
    b.query('SELECT 1')
    a.query('SELECT 2')
    expect(a.writes).toEqual(['cork'])
    expect(b.writes).toEqual(['cork'])
    await nextTick()
    expect(a.writes).toEqual(['cork', 'uncork'])
    expect(b.writes).toEqual(['cork', 'uncork'])
  })
})
