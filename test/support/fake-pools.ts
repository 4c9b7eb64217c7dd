import { afterEach, beforeEach, vi } from 'vitest'
import { createPool, type Pool, type PoolOptions } from '../../src/index.js'
import { tick, useFakeClock } from './clock.js'
import { type FakeConnection, FakeDialect } from './fake-dialect.js'

/** A fresh fake dialect for each test, and the pools a test makes on it. */
export interface FakePools {
  /** This test's dialect. */
  readonly dialect: FakeDialect
  /** Makes a pool on this test's dialect; it is destroyed after the test. */
  make(options?: Partial<PoolOptions<FakeConnection>>): Pool<FakeConnection>
}

/**
 * Registers the unit tests' set-up: the fake clock and a new {@link FakeDialect} before each
 * test; after it, every pool it made destroyed and real timers back.
 */
export function useFakePools(defaults: Partial<PoolOptions<FakeConnection>> = {}): FakePools {
  let dialect = new FakeDialect()
  let pools: Pool<FakeConnection>[] = []
  beforeEach(() => {
    useFakeClock()
    dialect = new FakeDialect()
    pools = []
  })
  afterEach(async () => {
    for (const pool of pools) void pool.destroy()
    await tick(100)
    vi.useRealTimers()
  })
  return {
    get dialect() {
      return dialect
    },
    make(options = {}) {
      const pool = createPool<FakeConnection>({ dialect, ...defaults, ...options })
      pools.push(pool)
      return pool
    },
  }
}
