import { request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  Controller,
  type DynamicModule,
  Get,
  Inject,
  Injectable,
  type MiddlewareConsumer,
  Module,
  type NestModule,
  type OnApplicationShutdown,
  Post,
} from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import type { NestExpressApplication } from '@nestjs/platform-express'
import { afterAll, beforeAll, expect, it, vi } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import { Pool } from '../../src/compat/pg.js'
import { requestScope } from '../../src/integrations/express.js'
import { trackProcessErrors } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import { SessionMonitor } from './session-monitor.js'
import { unique } from './support.js'

// The NestJS recipe of docs/frameworks.md: the pool is a singleton provider, lifeguard's Express
// middleware is applied through a MiddlewareConsumer, and a singleton service queries the
// singleton pool. Its queries join the request's connection through the AsyncLocalStorage scope
// that the middleware opens: no provider is Scope.REQUEST.
//
// vitest transpiles with esbuild, and tsconfig.json has no `experimentalDecorators`, so the
// decorators are applied by hand after each class, exactly as TypeScript's legacy decorators
// apply them: `@Injectable()` on a class is `Injectable()(Class)`, `@Inject(TOKEN)` on the first
// constructor parameter is `Inject(TOKEN)(Class, undefined, 0)`, and `@Get('x')` on a method is
// `Get('x')(Class.prototype, 'method', descriptor)`. Injection goes through explicit tokens, so
// no `emitDecoratorMetadata` is needed either.

const PG_POOL = Symbol('PG_POOL')
const POOL_SIZE = 5

interface Backend {
  pid: number
  intx: boolean
}

/** Applies method decorators to `Class.prototype[key]`, as `@Get()` or `@Post()` would. */
function decorateMethod(target: object, key: string, ...decorators: MethodDecorator[]): void {
  const descriptor = Object.getOwnPropertyDescriptor(target, key)!
  for (const decorator of decorators) decorator(target, key, descriptor)
}

/** Owns the singleton pool: its middleware opens a scope per request, and shutdown ends it. */
class DatabaseModule implements NestModule, OnApplicationShutdown {
  constructor(private readonly pool: Pool) {}

  static forRoot(connectionString: string): DynamicModule {
    return {
      module: DatabaseModule,
      global: true,
      providers: [
        { provide: PG_POOL, useFactory: () => new Pool({ connectionString, max: POOL_SIZE }) },
      ],
      exports: [PG_POOL],
    }
  }

  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(requestScope(this.pool)).forRoutes('*')
  }

  onApplicationShutdown(): Promise<void> {
    return this.pool.end()
  }
}
Module({})(DatabaseModule)
Inject(PG_POOL)(DatabaseModule, undefined, 0)

/** A default-scoped (singleton) service: it knows nothing of requests, only of the pool. */
class AccountsService {
  constructor(private readonly pool: Pool) {}

  /** The connection's backend, and whether it is inside a transaction opened earlier. */
  async backend(): Promise<Backend> {
    const { rows } = await this.pool.query(
      'SELECT pg_backend_pid() AS pid, now() <> statement_timestamp() AS intx',
    )
    return rows[0] as Backend
  }

  async begin(): Promise<Backend> {
    await this.pool.query('BEGIN')
    return this.backend()
  }

  async commit(): Promise<void> {
    await this.pool.query('COMMIT')
  }

  async record(table: string, marker: string): Promise<void> {
    await this.pool.query(`INSERT INTO ${table} (marker) VALUES ($1)`, [marker])
  }
}
Injectable()(AccountsService)
Inject(PG_POOL)(AccountsService, undefined, 0)

/** The table that the failing route writes to, created by the test before the app starts. */
const table = unique('nest_scope')

class AccountsController {
  constructor(private readonly accounts: AccountsService) {}

  /** Two service calls, one after the other: the second must see the first one's BEGIN. */
  async sameConnection(): Promise<{ first: Backend; second: Backend }> {
    const first = await this.accounts.begin()
    const second = await this.accounts.backend()
    await this.accounts.commit()
    return { first, second }
  }

  /**
   * The same after Nest's JSON body parser has read the body in a later stream event (its
   * raw-body binds that callback to the request's async context).
   */
  sameConnectionAfterBody(): Promise<{ first: Backend; second: Backend }> {
    return this.sameConnection()
  }

  ping(): Promise<Backend> {
    return this.accounts.backend()
  }

  async throwAfterBegin(): Promise<never> {
    await this.accounts.begin()
    await this.accounts.record(table, 'thrown')
    throw new Error('the handler failed inside its transaction')
  }
}
Controller('accounts')(AccountsController)
Inject(AccountsService)(AccountsController, undefined, 0)
decorateMethod(AccountsController.prototype, 'sameConnection', Get('same-connection'))
decorateMethod(AccountsController.prototype, 'sameConnectionAfterBody', Post('same-connection'))
decorateMethod(AccountsController.prototype, 'ping', Get('ping'))
decorateMethod(AccountsController.prototype, 'throwAfterBegin', Get('throw-after-begin'))

class AppModule {}
Module({ controllers: [AccountsController], providers: [AccountsService] })(AppModule)

async function getJson<T>(url: string): Promise<{ status: number; body: T }> {
  const response = await fetch(url)
  return { status: response.status, body: (await response.json()) as T }
}

/**
 * POSTs a JSON body that leaves 50 ms after the headers, so that Nest's body parser reads it in
 * a later stream event rather than from the first packet.
 */
function postLate<T>(url: string, body: unknown): Promise<{ status: number; body: T }> {
  const payload = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    })
    req.on('error', reject)
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () =>
        resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) }),
      )
      res.on('error', reject)
    })
    req.flushHeaders()
    setTimeout(() => req.end(payload), 50)
  })
}

const status = await probe('postgres')
describeOnServer(status, `NestJS with a singleton pool on ${status.label}`, () => {
  let monitor: SessionMonitor
  let app: NestExpressApplication
  let server: Server
  let pool: Pool
  let base: string
  let processErrors: ReturnType<typeof trackProcessErrors>

  /**
   * Waits until every request's connection is back in the pool ('close' ends the scope) and its
   * reset has run: until the reset's ROLLBACK reaches the server, a request that left a
   * transaction open still shows as idle in it.
   */
  const allReturned = () =>
    vi.waitFor(() => expect(lifeguardOf(pool).stats()).toMatchObject({ leased: 0, resetting: 0 }), {
      timeout: 5_000,
      interval: 20,
    })

  beforeAll(async () => {
    processErrors = trackProcessErrors()
    monitor = await SessionMonitor.open('postgres', 'scope_nestjs')
    app = await NestFactory.create<NestExpressApplication>(
      { module: AppModule, imports: [DatabaseModule.forRoot(monitor.url)] },
      { logger: false },
    )
    pool = app.get<Pool>(PG_POOL)
    await pool.query(`CREATE TABLE ${table} (id serial PRIMARY KEY, marker text NOT NULL)`)
    await app.listen(0, '127.0.0.1')
    server = app.getHttpServer() as Server
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/accounts`
  })

  afterAll(async () => {
    await pool?.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {})
    // fetch keeps its sockets alive: close them, or close() waits out the keep-alive timeout.
    server?.closeAllConnections()
    // Ends the pool too, through DatabaseModule's onApplicationShutdown.
    await app?.close()
    await monitor?.close()
    processErrors?.stop()
    expect(pool?.ended).toBe(true)
    expect(processErrors?.errors ?? []).toEqual([])
  })

  it("runs a singleton service's sequential queries on the request's connection, BEGIN included", async () => {
    const responses = await Promise.all(
      Array.from({ length: 2 * POOL_SIZE }, () =>
        getJson<{ first: Backend; second: Backend }>(`${base}/same-connection`),
      ),
    )
    for (const { status, body } of responses) {
      expect(status).toBe(200)
      expect(body.second.pid).toBe(body.first.pid)
      // The first service call's BEGIN is still open when the second one queries.
      expect(body.first.intx).toBe(true)
      expect(body.second.intx).toBe(true)
    }
    await allReturned()
    expect(await monitor.inTransaction()).toBe(0)
  })

  it("keeps the scope when Nest's JSON parser reads a body that arrives after the headers", async () => {
    const { status, body } = await postLate<{ first: Backend; second: Backend }>(
      `${base}/same-connection`,
      { amount: 1 },
    )
    expect(status).toBe(201)
    expect(body.second.pid).toBe(body.first.pid)
    expect(body.second.intx).toBe(true)
    await allReturned()
  })

  it(`serves 200 concurrent requests through a pool of ${POOL_SIZE}, the server never seeing more`, async () => {
    const responses: Array<{ status: number; body: { first: Backend; second: Backend } }> = []
    const peak = await monitor.peakDuring(async () => {
      responses.push(
        ...(await Promise.all(
          Array.from({ length: 200 }, () =>
            getJson<{ first: Backend; second: Backend }>(`${base}/same-connection`),
          ),
        )),
      )
    })
    expect(responses.filter((r) => r.status !== 200)).toEqual([])
    // Each request held one connection across its three queries, waiting its turn for it.
    expect(responses.filter((r) => r.body.second.pid !== r.body.first.pid)).toEqual([])
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThanOrEqual(POOL_SIZE)
    await allReturned()
    expect(lifeguardOf(pool).stats().leased).toBe(0)
  })

  it('rolls back what a request that throws after BEGIN left open', async () => {
    const thrown = await getJson<{ statusCode: number }>(`${base}/throw-after-begin`)
    expect(thrown).toEqual({
      status: 500,
      body: { statusCode: 500, message: 'Internal server error' },
    })
    await allReturned()
    expect(await monitor.inTransaction()).toBe(0)
    // Its INSERT ran inside its BEGIN, on the request's connection, and was rolled back.
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${table}`)
    expect(rows[0].n).toBe(0)
    // And the pool lends connections with no transaction open.
    const next = await Promise.all(
      Array.from({ length: 2 * POOL_SIZE }, () => getJson<Backend>(`${base}/ping`)),
    )
    for (const { status, body } of next) {
      expect(status).toBe(200)
      expect(body.intx).toBe(false)
    }
  })
})
