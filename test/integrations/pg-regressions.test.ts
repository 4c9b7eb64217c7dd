import pg from 'pg'
import { expect, it } from 'vitest'
import { lifeguardOf, Pool } from '../../src/compat/pg.js'
import { pendingAfter } from '../support/promises.js'
import { describeOnServer, probe } from '../support/servers.js'
import { PG_URL } from './support.js'

// Regressions of lifeguard/pg, each run twice, on pg's own Pool and on the facade: the facade
// must behave as pg does.

const MODULES = [
  ['pg', pg.Pool],
  ['lifeguard/pg', Pool],
] as const

describeOnServer(await probe('postgres'), 'lifeguard/pg regressions, twinned with pg', () => {
  for (const [module, PoolClass] of MODULES) {
    it(`${module}: two pools with the same config shared one pool, so a "jobs" pool holding all its connections made a "web" pool wait`, async () => {
      // Equal configs, as two `new Pool(config)` of one app are. Had they shared a pool, the web
      // query would wait for a jobs connection and fail at connectionTimeoutMillis.
      const config = { connectionString: PG_URL, max: 2, connectionTimeoutMillis: 3_000 }
      const jobs = new PoolClass(config)
      const web = new PoolClass(config)
      try {
        const held = [await jobs.connect(), await jobs.connect()]
        // jobs is full: its next caller waits.
        const third = jobs.connect()
        expect(await pendingAfter(third, 200)).toBe(true)
        const started = performance.now()
        const { rows } = await web.query('SELECT 1 AS n')
        const waited = performance.now() - started
        expect(rows).toEqual([{ n: 1 }])
        // One connect and one query on a loaded 2-core machine; sharing would cost 3 s.
        expect(waited).toBeLessThan(1_500)
        expect([jobs.totalCount, web.totalCount]).toEqual([2, 1])
        for (const client of held) client.release()
        ;(await third).release()
      } finally {
        await Promise.all([jobs.end(), web.end()])
      }
      if (module === 'lifeguard/pg') expect(lifeguardOf(jobs)).not.toBe(lifeguardOf(web))
    })
  }
})
