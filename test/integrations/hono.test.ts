import type { Server } from 'node:http'
import { serve } from '@hono/node-server'
import { type Context, Hono } from 'hono'
import { requestScope } from '../../src/integrations/hono.js'
import { type Framework, frameworkSuite } from './framework-suite.js'

const honoFramework: Framework = {
  name: 'hono',
  serve(pool, routes) {
    const app = new Hono()
    app.use(requestScope(pool))
    for (const route of routes) {
      const method = route.method === 'GET' ? 'get' : 'post'
      const handler = async (c: Context) => c.json(await route.handle({ db: c.var.db }))
      if (route.transaction) {
        app[method](route.path, requestScope(pool, { transaction: true }), handler)
      } else {
        app[method](route.path, handler)
      }
    }
    app.onError((error, c) => c.json({ error: error.message }, 500))
    return new Promise<Server>((resolve) => {
      const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () =>
        resolve(server as Server),
      )
    })
  },
}

await frameworkSuite(honoFramework)
