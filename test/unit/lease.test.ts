import { describe, expect, it } from 'vitest'
import { Lease, LeaseReleasedError } from '../../src/index.js'
import { tick } from '../support/clock.js'
import { useFakePools } from '../support/fake-pools.js'
import { checkInvariants } from '../support/invariants.js'

const fake = useFakePools({ max: 2 })

describe("a lease is the pool's alone to make and revoke", () => {
  it('throws a TypeError for new Lease(), even with a look-alike token, while instanceof works', async () => {
    const pool = fake.make()
    const lease = await pool.acquire()
    expect(lease).toBeInstanceOf(Lease)
    const Make = Lease as unknown as new (...args: unknown[]) => unknown
    expect(() => new Make()).toThrow(TypeError)
    expect(() => new Make(Symbol('lifeguard.lease'), { giveBack() {} }, {})).toThrow(
      /leases come from pool\.acquire\(\)/,
    )
    lease.release()
  })

  it('regression: a user could call lease.revoke() and leak the connection for good', async () => {
    const pool = fake.make()
    const lease = await pool.acquire()
    // Nothing of the pool's side is on the lease or its prototype, under any key.
    for (const key of ['revoke', 'sublease']) expect(key in lease).toBe(false)
    expect(Reflect.ownKeys(lease)).toEqual([])
    expect(
      Reflect.ownKeys(Lease.prototype).sort((a, b) => String(a).localeCompare(String(b))),
    ).toEqual(
      [
        'active',
        'connection',
        'constructor',
        'destroy',
        'release',
        Symbol.asyncDispose,
        Symbol.dispose,
      ].sort((a, b) => String(a).localeCompare(String(b))),
    )
    lease.release()
    expect(checkInvariants(pool, fake.dialect)).toMatchObject({ leased: 0, idle: 1 })
  })

  it('lets the holder release once more, as a no-op, after the pool revoked the lease', async () => {
    const pool = fake.make()
    const lease = await pool.acquire()
    const destroyed = pool.destroy()
    await tick(10)
    await destroyed
    expect(lease.active).toBe(false)
    expect(() => lease.connection).toThrow(LeaseReleasedError)
    expect(() => lease.release()).not.toThrow()
    expect(pool.stats()).toMatchObject({ revoked: 1, leased: 0 })
  })
})
