import type { Server } from 'node:http'
import { createAdaptorServer } from '@hono/node-server'
import { type Context, Hono } from 'hono'
import { requestScope } from '../../src/integrations/hono.js'
import { BACKLOG, type Framework, frameworkSuite } from './framework-suite.js'

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
    // createAdaptorServer rather than serve(), which cannot pass a listen backlog.
    const server = createAdaptorServer({ fetch: app.fetch }) as Server
    return new Promise<Server>((resolve) => {
      server.listen(0, '127.0.0.1', BACKLOG, () => resolve(server))
    })
  },
}

await frameworkSuite(honoFramework)
