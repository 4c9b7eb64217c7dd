import { expect } from 'vitest'
import { transitionChecks } from '../../src/core/connection-record.js'
import type { Pool, PoolStats } from '../../src/index.js'
import type { FakeConnection, FakeDialect } from './fake-dialect.js'

// Every test that checks invariants also has each record's move checked against the table of
// legal transitions: `move()` throws on an illegal one.
transitionChecks.enabled = true

/**
 * Asserts what must hold of a pool after every step: the counts add up, the bounds hold, and
 * every connection the dialect has open is one the pool accounts for (nothing lost or leaked).
 */
export function checkInvariants(pool: Pool<FakeConnection>, dialect?: FakeDialect): PoolStats {
  const s = pool.stats()
  expect(s.total).toBe(s.idle + s.leased + s.connecting + s.resetting + s.validating + s.closing)
  expect(s.total).toBeLessThanOrEqual(s.max + s.maxOverflow)
  // No caller waits while a connection sits idle: the pump hands it over in the same step,
  // unless a ping in flight covers the caller (a hedged, slow one no longer does, and then the
  // pump takes an idle one for it: at most `validating` callers wait beside idle connections).
  expect(
    s.waiting > s.validating && s.idle > 0,
    `idle=${s.idle} while waiting=${s.waiting} (validating=${s.validating})`,
  ).toBe(false)
  // Every lease handed out is still held, or ended by its holder or by the pool.
  expect(s.acquired).toBe(s.released + s.revoked + s.leased + s.pipelined)
  if (dialect !== undefined) {
    // The fake marks a connection closed at once, so a closing one is no longer open.
    expect(dialect.open.length).toBe(s.idle + s.leased + s.resetting + s.validating)
  }
  return s
}
