import { existsSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { startThrowawayMariaDb } from '../support/throwaway-mariadb.js'
import { startThrowawayPostgres } from '../support/throwaway-postgres.js'
import { alive } from '../support/throwaway-server.js'

// The throwaway servers themselves: they start on a port of their own, restart, crash and come
// back on the same port and data, and leave nothing behind (also when they fail to start).

const kinds = [
  {
    label: 'PostgreSQL',
    start: startThrowawayPostgres,
    bad: { shared_buffers: 'not a size' },
    session: 'SELECT pg_backend_pid() AS id',
  },
  {
    label: 'MariaDB',
    start: startThrowawayMariaDb,
    bad: { 'no-such-option': 1 },
    session: 'SELECT CONNECTION_ID() AS id',
  },
] as const

describe.each(kinds)('throwaway $label', ({ start, bad, session }) => {
  const removals: Array<() => Promise<void>> = []
  afterAll(() => Promise.all(removals.map((remove) => remove())))

  it('starts in a few seconds on a port of its own, keeps its data across restart and crash, and remove() leaves nothing', async () => {
    const t0 = performance.now()
    const server = await start()
    removals.push(() => server.remove())
    const startMs = performance.now() - t0
    expect(server.port).not.toBe(5432)
    expect(server.port).not.toBe(3306)
    expect(startMs).toBeLessThan(20_000)
    await server.sql('CREATE TABLE kept (id int)')
    await server.sql('INSERT INTO kept VALUES (1)')
    const firstPid = server.pid!
    expect(alive(firstPid)).toBe(true)

    await server.restart({ mode: 'fast' })
    expect(server.pid).not.toBe(firstPid)
    expect(alive(firstPid)).toBe(false)

    const beforeCrash = server.pid!
    await server.crash()
    expect(server.pid).toBeUndefined()
    expect(alive(beforeCrash)).toBe(false)
    await expect(server.sql('SELECT 1')).rejects.toThrow()
    await server.start()
    expect(await server.sql('SELECT count(*) AS n FROM kept')).toEqual([{ n: expect.anything() }])
    expect(Number((await server.sql<{ n: unknown }>('SELECT count(*) AS n FROM kept'))[0]!.n)).toBe(
      1,
    )
    expect((await server.sql(session)).length).toBe(1)

    await server.stop()
    expect(server.pid).toBeUndefined()
    const accepted = await server.start().then(() => server.waitUntilAccepting(5_000))
    expect(accepted).toBeGreaterThan(0)

    const last = server.pid!
    await server.remove()
    expect(alive(last)).toBe(false)
    expect(existsSync(server.dir)).toBe(false)
    console.log(`[throwaway] ${server.kind} started in ${Math.round(startMs)} ms`)
  })

  it('a server that fails to start leaves no process and no temp dir', async () => {
    const error = await start({ settings: bad }).catch((e: Error) => e)
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toMatch(/did not start/)
    const dir = / in (\S+) did not start/.exec((error as Error).message)?.[1]
    expect(dir).toMatch(/lifeguard-/)
    expect(existsSync(dir!)).toBe(false)
  })
})
