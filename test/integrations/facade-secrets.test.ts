import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import mysql2Facade from '../../src/compat/mysql2.js'
import mysql2PromiseFacade from '../../src/compat/mysql2-promise.js'

// Nothing here connects: the pools point at a closed port on 127.0.0.1 and are ended unused.
const SECRET = 'pw-never-printed-7f3a'
const config = { host: '127.0.0.1', port: 9, user: 'app', password: SECRET, database: 'app' }

describe('the mysql2 facades keep the password out of util.inspect', () => {
  it('util.inspect(createPool(config)) printed the password from mysql2 config.connectionConfig', async () => {
    const pool = mysql2Facade.createPool({ ...config })
    try {
      expect(inspect(pool, { depth: 10 })).not.toContain(SECRET)
      // Still there for code that reads it, as on mysql2.
      const own = (pool as unknown as { config: { connectionConfig: { password: string } } }).config
      expect(own.connectionConfig.password).toBe(SECRET)
    } finally {
      await new Promise<void>((resolve) => pool.end(() => resolve()))
    }
  })

  it('the same through lifeguard/mysql2/promise', async () => {
    const pool = mysql2PromiseFacade.createPool({ ...config })
    try {
      expect(inspect(pool, { depth: 10 })).not.toContain(SECRET)
    } finally {
      await pool.end()
    }
  })
})
