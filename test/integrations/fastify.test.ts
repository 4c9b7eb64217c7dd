import type { Server } from 'node:http'
import Fastify from 'fastify'
import fastifyLifeguard from '../../src/integrations/fastify.js'
import { BACKLOG, type Framework, frameworkSuite } from './framework-suite.js'

const fastifyFramework: Framework = {
  name: 'fastify',
  async serve(pool, routes) {
    const app = Fastify()
    await app.register(fastifyLifeguard, { pool })
    for (const route of routes) {
      app.route({
        method: route.method,
        url: route.path,
        config: { lifeguard: { transaction: route.transaction ?? false } },
        handler: (request) => route.handle({ db: request.db }),
      })
    }
    await app.listen({ port: 0, host: '127.0.0.1', backlog: BACKLOG })
    return app.server as Server
  },
}

await frameworkSuite(fastifyFramework)
