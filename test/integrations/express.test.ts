import type { Server } from 'node:http'
import express, { type NextFunction, type Request, type Response } from 'express'
import { requestScope } from '../../src/integrations/express.js'
import { BACKLOG, type Framework, frameworkSuite } from './framework-suite.js'

const expressFramework: Framework = {
  name: 'express',
  serve(pool, routes) {
    const app = express()
    app.use(express.json())
    app.use(requestScope(pool))
    for (const route of routes) {
      const own = route.transaction ? [requestScope(pool, { transaction: true })] : []
      const method = route.method === 'GET' ? 'get' : 'post'
      app[method](route.path, ...own, async (req: Request, res: Response) => {
        res.json(await route.handle({ db: req.db }))
      })
    }
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).json({ error: error.message })
    })
    return new Promise<Server>((resolve) => {
      const server = app.listen(0, '127.0.0.1', BACKLOG, () => resolve(server))
    })
  },
}

await frameworkSuite(expressFramework)
