import { spawnSync } from 'node:child_process'
import { beforeAll, describe, expect, it } from 'vitest'
import { bundleCore, inlineDialect } from '../support/bundle.js'

let core: string

beforeAll(async () => {
  core = await bundleCore()
})

/** Runs an ESM script in a fresh node process and reports how it ended. */
function run(script: string, env: Record<string, string> = {}) {
  const started = Date.now()
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 20_000,
  })
  return { ...child, ms: Date.now() - started }
}

describe('the pool in a real process', () => {
  it('an idle pool lets the process exit, with housekeeping, lifetimes and min on', () => {
    const child = run(`
      import { createPool } from ${JSON.stringify(core)}
      const pool = createPool({ dialect: ${inlineDialect}, min: 2, idleTimeout: 60000, keepaliveInterval: 30000, maxLifetime: 600000 })
      const lease = await pool.acquire()
      lease.release()
      // A timed-out waiter leaves its (shared) timer behind: it must not hold the process either.
      const other = createPool({ dialect: ${inlineDialect}, max: 1, acquireTimeout: 50 })
      const held = await other.acquire()
      await other.acquire().catch((e) => console.log(e.code))
      held.release()
      console.log('done', pool.stats().idle)
    `)
    expect(child.stderr).toBe('')
    expect(child.stdout).toContain('LIFEGUARD_ACQUIRE_TIMEOUT')
    // min counts idle connections (HikariCP's minimumIdle): lending one opened a third.
    expect(child.stdout).toMatch(/done 3/)
    expect(child.status).toBe(0)
    expect(child.signal).toBeNull()
    expect(child.ms).toBeLessThan(10_000)
  })

  it('NODE_DEBUG=lifeguard logs connect, acquire, release, reset and invalidate with the name and counts', () => {
    const child = run(
      `
      import { createPool } from ${JSON.stringify(core)}
      const dialect = { ...${inlineDialect}, reset() {} , isDisconnect: (e) => e.message === 'gone' }
      const pool = createPool({ dialect, name: 'orders' })
      const lease = await pool.acquire()
      lease.release()
      await pool.use(() => { throw new Error('gone') }).catch(() => {})
      await pool.close()
    `,
      { NODE_DEBUG: 'lifeguard' },
    )
    expect(child.status).toBe(0)
    const log = child.stderr
    expect(log).toMatch(
      /LIFEGUARD \d+: orders connect #1 in [\d.]+ ms \(total=1 idle=0 leased=0 connecting=1 waiting=1/,
    )
    expect(log).toMatch(/orders acquire #1 waited [\d.]+ ms \(total=1 idle=0 leased=1/)
    expect(log).toMatch(/orders release #1 \(total=1/)
    expect(log).toMatch(/orders reset \(rollback\) #1/)
    expect(log).toMatch(/orders invalidate \(disconnect\) #1/)
    expect(log).toMatch(/orders close #1/)
  })

  it('logs nothing without NODE_DEBUG', () => {
    const child = run(`
      import { createPool } from ${JSON.stringify(core)}
      const pool = createPool({ dialect: ${inlineDialect} })
      ;(await pool.acquire()).release()
      await pool.close()
    `)
    expect(child.status).toBe(0)
    expect(child.stderr).toBe('')
  })

  it('a connect error with nobody listening never crashes the process', () => {
    const child = run(`
      import { createPool } from ${JSON.stringify(core)}
      process.on('unhandledRejection', (e) => { console.log('UNHANDLED', e); process.exitCode = 3 })
      const pool = createPool({
        dialect: { name: 'down', connect: async () => { throw new Error('ECONNREFUSED') }, close: async () => {} },
        min: 3, acquireTimeout: 300,
      })
      const error = await pool.acquire().catch((e) => e)
      console.log(error.code, error.cause.code, error.cause.cause.message)
      // Deliberate: min: 3 keeps the pool connecting in the background, with nobody waiting.
      await new Promise((r) => setTimeout(r, 300))
      await pool.close()
    `)
    expect(child.stdout).not.toContain('UNHANDLED')
    expect(child.stdout).toContain(
      'LIFEGUARD_ACQUIRE_TIMEOUT LIFEGUARD_CONNECT_FAILED ECONNREFUSED',
    )
    expect(child.status).toBe(0)
  })
})
