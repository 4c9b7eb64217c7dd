import { describe, expect, it } from 'vitest'
import {
  checkTransition,
  type RecordState,
  TRANSITIONS,
  transitionChecks,
} from '../../src/core/connection-record.js'
import { PoolCore } from '../../src/core/pool-core.js'
import { type FakeConnection, FakeDialect } from '../support/fake-dialect.js'
import '../support/invariants.js'

const STATES: RecordState[] = [
  'closed',
  'connecting',
  'idle',
  'leased',
  'resetting',
  'validating',
  'closing',
]

describe('the table of a record’s legal moves', () => {
  it('names every state, and every move leads to a state', () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...STATES].sort())
    for (const next of Object.values(TRANSITIONS)) {
      for (const to of next) expect(STATES).toContain(to)
    }
  })

  it('throws on an illegal move, naming the record and both states', () => {
    expect(() => checkTransition({ id: 7, state: 'idle' }, 'resetting')).toThrow(
      'connection #7 cannot move from idle to resetting',
    )
    expect(() => checkTransition({ id: 1, state: 'closed' }, 'idle')).toThrow(/closed to idle/)
    expect(() => checkTransition({ id: 1, state: 'closing' }, 'idle')).toThrow()
  })

  it('accepts every move the table lists', () => {
    for (const from of STATES) {
      for (const to of TRANSITIONS[from]) {
        expect(() => checkTransition({ id: 1, state: from }, to)).not.toThrow()
      }
    }
  })

  it('is checked by move() under test: the pool refuses to lend a record in a wrong state', async () => {
    // The unit tests turn the check on through test/support/invariants.ts.
    expect(transitionChecks.enabled).toBe(true)
    const dialect = new FakeDialect()
    const sink = { listening: () => false, emit: () => {} }
    const core = new PoolCore<FakeConnection>({ dialect, max: 1 }, sink)
    const lease = await core.acquire()
    lease.release()
    // Corrupt the idle record behind the engine's back: lending it now is a move from closing.
    const records = (core as unknown as { records: Set<{ state: RecordState }> }).records
    const [record] = [...records]
    expect(record!.state).toBe('idle')
    record!.state = 'closing'
    expect(() => core.acquire()).toThrow('cannot move from closing to leased')
    record!.state = 'idle'
    await core.destroy()
  })
})
