import pg from 'pg'
import { beforeAll, describe, expect, it } from 'vitest'
import * as facade from '../../src/compat/pg.js'
import { InvalidOptionError } from '../../src/core/errors.js'
import { postgres } from '../../src/dialects/postgres.js'
import { PG_URL } from '../integrations/support.js'
import { bundleFacade, runModuleScript, type ScriptEnd } from '../support/bundle.js'
import { trackProcessErrors } from '../support/process-errors.js'
import { describeOnServer, probe } from '../support/servers.js'
import { twin } from '../support/twin.js'

// The surface of pg's Pool that a pg user observes (callbacks, events, options, the private
// lists), each behaviour run on pg's own Pool and on lifeguard/pg's, which must agree. Titled
// after the behaviours of issue 14.

/** What a scenario uses of either module. */
type PgLike = { Pool: typeof pg.Pool }

const MODULES: Record<'driver' | 'facade', PgLike> = {
  driver: pg,
  facade: facade as unknown as PgLike,
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` every 10 ms until it holds, for at most `ms`. */
async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time')
    await sleep(10)
  }
}

/**
 * Records a pool's pg events in order, each client named by the order it was first seen
 * (`c1`, `c2`…) and each error by its message, so that two runs can be compared.
 */
function recordEvents(pool: pg.Pool): { log: unknown[][]; name: (client: unknown) => string } {
  const names = new Map<unknown, string>()
  const name = (client: unknown) => {
    let n = names.get(client)
    if (n === undefined) {
      n = `c${names.size + 1}`
      names.set(client, n)
    }
    return n
  }
  const log: unknown[][] = []
  const show = (arg: unknown) =>
    arg instanceof pg.Client ? name(arg) : arg instanceof Error ? `Error: ${arg.message}` : arg
  for (const event of ['connect', 'acquire', 'release', 'remove', 'error']) {
    pool.on(event as 'connect', (...args: unknown[]) => log.push([event, ...args.map(show)]))
  }
  return { log, name }
}

/** A folder with the facade bundled into one file, for the child-process scenarios. */
let dir: string

beforeAll(async () => {
  dir = await bundleFacade('pg')
})

/**
 * Runs `body` as an ESM script in a fresh process with `pg` bound to the real module or the
 * facade's default export, and returns the lines it printed and its exit code. The script is
 * killed after 15 s.
 */
function runScript(side: 'driver' | 'facade', body: string): Promise<ScriptEnd> {
  const from = side === 'driver' ? 'pg' : './lifeguard-pg.mjs'
  const script = `import pg from ${JSON.stringify(from)}\nconst url = ${JSON.stringify(PG_URL)}\n${body}`
  return runModuleScript(dir, script)
}

/** The script's reporting of what reached the process: an uncaught exception or an unhandled rejection. */
const REPORTER = `
process.on('uncaughtException', (e) => { console.log('uncaughtException: ' + e.message); finish() })
process.on('unhandledRejection', (e) => { console.log('unhandledRejection: ' + e.message); finish() })
let finishing = false
let ended = false
function finish() {
  if (ended) process.exit(7)
  if (finishing) return
  finishing = true
  pool.end().catch(() => {}).then(() => process.exit(7))
}
`

describeOnServer(await probe('postgres'), 'pg Pool surface, twinned with pg-pool', () => {
  twin(
    'F. releasing a client whose query is still running lets the query finish for its caller',
    MODULES,
    async (m) => {
      const errors = trackProcessErrors()
      const pool = new m.Pool({ connectionString: PG_URL, max: 1 })
      try {
        const client = await pool.connect()
        const running = client.query('SELECT pg_sleep(0.2), 1 AS n')
        client.release()
        const first = await running
        // The next borrower gets the same connection, usable.
        const again = await pool.connect()
        const { rows } = await again.query('SELECT 2 AS n')
        const same = again === client
        again.release()
        // A callback query released before it ran: its callback still gets the rows.
        const third = await pool.connect()
        const viaCallback = new Promise<unknown>((resolve, reject) =>
          third.query('SELECT pg_sleep(0.1), 3 AS n', (error, result) =>
            error ? reject(error) : resolve(result.rows[0].n),
          ),
        )
        third.release()
        const n3 = await viaCallback
        await sleep(50)
        errors.stop()
        expect(errors.errors).toEqual([])
        return { n1: first.rows[0].n, n2: rows[0].n, n3, same, processErrors: errors.errors }
      } finally {
        errors.stop()
        await pool.end()
      }
    },
  )

  twin(
    'F. a query still running at release was killed after connectionTimeoutMillis (the reset timeout)',
    MODULES,
    async (m) => {
      const errors = trackProcessErrors()
      const pool = new m.Pool({ connectionString: PG_URL, max: 1, connectionTimeoutMillis: 300 })
      try {
        const client = await pool.connect()
        const started = performance.now()
        const running = client.query('SELECT pg_sleep(1) AS slept, 1 AS n')
        client.release()
        await sleep(600)
        // Past connectionTimeoutMillis, the query's client is still the pool's.
        const during = { total: pool.totalCount }
        const outcome = await running.then(
          (result) => `completed: ${result.rows[0].n}`,
          (error: Error) => `rejected: ${error.message}`,
        )
        expect(performance.now() - started).toBeLessThan(5_000)
        // Then lent on, usable, still within connectionTimeoutMillis of asking.
        const again = await pool.connect()
        const { rows } = await again.query('SELECT 2 AS n')
        const same = again === client
        again.release()
        await sleep(50)
        errors.stop()
        return { outcome, during, n2: rows[0].n, same, processErrors: errors.errors }
      } finally {
        errors.stop()
        await pool.end()
      }
    },
  )

  for (const [what, body] of [
    [
      'connect',
      `pool.connect((err, client, done) => { done(); throw new Error('thrown in connect') })`,
    ],
    ['query', `pool.query('SELECT 1', () => { throw new Error('thrown in query') })`],
    [
      'a failed query',
      `pool.query('SELECT nope', (err) => { throw new Error('thrown after ' + err.code) })`,
    ],
    [
      'end',
      `await pool.query('SELECT 1'); pool.end(() => { ended = true; throw new Error('thrown in end') })`,
    ],
    [
      "Client's connect",
      `const client = new pg.Client(url); client.connect(() => { client.end(); throw new Error('thrown in Client connect') })`,
    ],
    [
      "Client's end",
      `const client = new pg.Client(url); await client.connect(); client.end(() => { throw new Error('thrown in Client end') })`,
    ],
  ] as const) {
    twin(
      `G. an exception thrown in a ${what} callback is an uncaughtException`,
      MODULES,
      async (_m, side) => {
        const { lines, code } = await runScript(
          side,
          `const pool = new pg.Pool({ connectionString: url })\n${REPORTER}\n${body}\n`,
        )
        expect(code).toBe(7)
        return { lines }
      },
      { timeout: 20_000 },
    )
  }

  twin(
    "I. verify runs on each new client's first lend; its error reaches the caller and removes the client",
    MODULES,
    async (m) => {
      const verified: string[] = []
      let fail = false
      const pool = new m.Pool({
        connectionString: PG_URL,
        max: 1,
        verify: (client: pg.Client, cb: (error?: Error) => void) => {
          verified.push(name(client))
          setTimeout(() => cb(fail ? new Error('nope') : undefined), 10)
        },
      } as pg.PoolConfig)
      const { log, name } = recordEvents(pool)
      try {
        const a = await pool.connect()
        a.release()
        const b = await pool.connect()
        const reused = a === b
        b.release()
        await pool.query('SELECT 1')
        const c = await pool.connect()
        c.release(true as never)
        await until(() => log.some((e) => e[0] === 'remove'))
        fail = true
        const failed = await pool.connect().then(
          () => 'lent',
          (error: Error) => error.message,
        )
        await until(() => log.filter((e) => e[0] === 'remove').length === 2)
        return { verified, reused, failed, log, total: pool.totalCount }
      } finally {
        await pool.end()
      }
    },
  )

  twin('I. log is called with messages as the pool works', MODULES, async (m) => {
    const messages: unknown[] = []
    const pool = new m.Pool({
      connectionString: PG_URL,
      log: (message: unknown) => messages.push(message),
    } as pg.PoolConfig)
    await pool.query('SELECT 1')
    await pool.end()
    const expected = [
      'connecting new client',
      'new client connected',
      'dispatching query',
      'query dispatched',
      'ending',
    ]
    return {
      allStrings: messages.every((message) => typeof message === 'string'),
      seen: expected.filter((message) => messages.includes(message)),
    }
  })

  twin('I. the Promise option makes the promises the pool returns', MODULES, async (m) => {
    let made = 0
    class Tracked<T> extends Promise<T> {
      constructor(
        executor: (resolve: (value: T) => void, reject: (reason?: unknown) => void) => void,
      ) {
        made++
        super(executor)
      }
    }
    const pool = new m.Pool({ connectionString: PG_URL, Promise: Tracked } as pg.PoolConfig)
    const connecting = pool.connect()
    const client = await connecting
    client.release()
    const querying = pool.query('SELECT 1')
    await querying
    const ending = pool.end()
    await ending
    const twice = pool.end()
    await twice.catch(() => {})
    return {
      connect: connecting instanceof Tracked,
      query: querying instanceof Tracked,
      end: ending instanceof Tracked,
      endTwice: twice instanceof Tracked,
      made: made > 0,
    }
  })

  twin(
    'I. a custom Client class makes the clients, and its callbacks are used',
    MODULES,
    async (m) => {
      const calls: string[] = []
      class Custom extends pg.Client {
        constructor(config?: pg.ClientConfig) {
          super(config)
          calls.push('new')
        }
      }
      const connect = Custom.prototype.connect as (this: pg.Client, cb?: unknown) => unknown
      Custom.prototype.connect = function (this: pg.Client, callback?: unknown) {
        calls.push(callback === undefined ? 'connect()' : 'connect(cb)')
        return connect.call(this, callback)
      } as never
      const pool = new m.Pool({
        connectionString: PG_URL,
        Client: Custom,
      } as unknown as pg.PoolConfig)
      try {
        const client = await pool.connect()
        const custom = client instanceof Custom
        const { rows } = await client.query('SELECT 1 AS n')
        client.release()
        return { custom, n: rows[0].n, calls: [...new Set(calls)] }
      } finally {
        await pool.end()
      }
    },
  )

  twin(
    'I. a Client that is only a function returning an object gets the config, and its connect error fails the caller',
    MODULES,
    async (m) => {
      const seen: unknown[] = []
      function Fake(this: unknown, config: { connectionString?: string }) {
        seen.push(config.connectionString)
        return {
          connect: (cb: (error: Error) => void) => cb(new Error('testing')),
          on: () => {},
        }
      }
      const connectionString = 'postgres://nobody@127.0.0.1:1/none'
      const pool = new m.Pool({
        connectionString,
        connectionTimeoutMillis: 1_000,
        Client: Fake,
      } as unknown as pg.PoolConfig)
      const started = performance.now()
      const failed = await pool.connect().then(
        () => false,
        () => true,
      )
      expect(performance.now() - started).toBeLessThan(3_000)
      await pool.end()
      return { failed, config: seen[0] }
    },
  )

  twin(
    "I. an idle client whose backend is terminated: the pool emits 'error'(err, client) and removes it",
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL })
      const admin = new pg.Client(PG_URL)
      await admin.connect()
      const { log, name } = recordEvents(pool)
      const errors: Array<{ sameClient: boolean; code: unknown; client: string }> = []
      pool.on('error', (error: Error & { client?: unknown; code?: string }, client) =>
        errors.push({
          sameClient: error.client === client,
          code: error.code,
          client: name(client),
        }),
      )
      try {
        const client = await pool.connect()
        const pid = (client as unknown as { processID: number }).processID
        client.release()
        await admin.query('SELECT pg_terminate_backend($1)', [pid])
        await until(() => log.some((e) => e[0] === 'remove'))
        // The next caller gets a new, working client.
        const { rows } = await pool.query('SELECT 1 AS n')
        return { errors, log, n: rows[0].n, total: pool.totalCount }
      } finally {
        await admin.end()
        await pool.end()
      }
    },
  )

  twin(
    "I. a client's 'error' reaches the pool's 'error' at once while idle, and never while lent",
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL }) as pg.Pool & {
        _clients: pg.Client[]
      }
      const poolErrors: string[] = []
      pool.on('error', (error: Error & { client?: unknown }, client) =>
        poolErrors.push(`${error.message}${error.client === client ? ' (err.client)' : ''}`),
      )
      try {
        const lent = await pool.connect()
        lent.once('error', () => {})
        lent.emit('error', new Error('while lent'))
        const afterLent = [...poolErrors]
        lent.release()
        await new Promise((resolve) => process.nextTick(resolve))
        lent.emit('error', new Error('while idle'))
        const afterIdle = { errors: [...poolErrors], clients: pool._clients.length }
        return { afterLent, afterIdle, idle: pool.idleCount }
      } finally {
        await pool.end()
      }
    },
  )

  twin('O. _clients and _idle show the open and the idle clients', MODULES, async (m) => {
    const pool = new m.Pool({ connectionString: PG_URL }) as pg.Pool & {
      _clients: pg.Client[]
      _idle: Array<{ client: pg.Client }>
    }
    try {
      const lengths = () => [pool._clients.length, pool._idle.length]
      const seen: number[][] = [lengths()]
      // A client is listed from the moment it is made, before it has connected.
      const querying = pool.query('SELECT 1')
      seen.push(lengths())
      const hasSocket = typeof pool._clients[0]?.connection?.stream?.destroy === 'function'
      await querying
      seen.push(lengths())
      const a = await pool.connect()
      const b = await pool.connect()
      seen.push(lengths())
      a.release()
      seen.push(lengths())
      const idleIsA = pool._idle[0]?.client === a
      const listed = pool._clients.includes(a) && pool._clients.includes(b)
      b.release(new Error('broken'))
      seen.push(lengths())
      return { seen, idleIsA, listed, hasSocket }
    } finally {
      await pool.end()
    }
  })

  twin(
    'O. expiredCount counts the lent clients older than maxLifetimeSeconds',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL, maxLifetimeSeconds: 1 })
      const { log } = recordEvents(pool)
      try {
        const a = await pool.connect()
        const counts = [pool.expiredCount]
        await sleep(1_300)
        counts.push(pool.expiredCount)
        a.release()
        counts.push(pool.expiredCount)
        await until(() => log.some((e) => e[0] === 'remove'))
        return { counts, log }
      } finally {
        await pool.end()
      }
    },
  )

  twin(
    'events: an idle client that outlives maxLifetimeSeconds is acquired, released and removed',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL, maxLifetimeSeconds: 0.3 })
      const { log } = recordEvents(pool)
      try {
        const a = await pool.connect()
        a.release()
        const started = performance.now()
        await until(() => log.some((e) => e[0] === 'remove'))
        // pg-pool's timer fires at 0.3 s; lifeguard's in the last tenth before it.
        expect(performance.now() - started).toBeLessThan(2_000)
        return { log, total: pool.totalCount }
      } finally {
        await pool.end()
      }
    },
  )

  twin(
    'events: connect, acquire, release and remove, with their arguments, in order',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL, max: 2, idleTimeoutMillis: 300 })
      const { log } = recordEvents(pool)
      try {
        const a = await pool.connect()
        await pool.query('SELECT 1')
        a.release(new Error('bad'))
        await until(() => log.filter((e) => e[0] === 'remove').length === 1)
        // The query's client closes on its idle timeout.
        await until(() => log.filter((e) => e[0] === 'remove').length === 2)
        const b = await pool.connect()
        b.release()
        return { log }
      } finally {
        await pool.end()
      }
    },
  )
})

describeOnServer(
  await probe('postgres'),
  'pg Pool surface: what the facade does on its own',
  () => {
    it("I. an idle client's error with no 'error' listener does not crash the process (pg-pool's would)", async () => {
      const errors = trackProcessErrors()
      const pool = new facade.Pool({ connectionString: PG_URL })
      const admin = new pg.Client(PG_URL)
      await admin.connect()
      try {
        const client = await pool.connect()
        const pid = (client as unknown as { processID: number }).processID
        client.release()
        await admin.query('SELECT pg_terminate_backend($1)', [pid])
        await until(() => pool.totalCount === 0)
        const { rows } = await pool.query('SELECT 1 AS n')
        expect(rows).toEqual([{ n: 1 }])
        errors.stop()
        expect(errors.errors).toEqual([])
      } finally {
        errors.stop()
        await admin.end()
        await pool.end()
      }
    })
  },
)

describe('pg Pool surface: bad function options', () => {
  for (const option of ['log', 'verify', 'Promise', 'Client'] as const) {
    it(`a ${option} that is given but not a function is refused at new Pool(), named`, () => {
      const make = () => new facade.Pool({ connectionString: PG_URL, [option]: 'yes' } as never)
      expect(make).toThrow(InvalidOptionError)
      expect(make).toThrow(new RegExp(`^Invalid option ${option}: "yes"; expected `))
    })
  }

  for (const option of ['Promise', 'Client'] as const) {
    it(`an arrow function as ${option} is refused at new Pool(), not at end() with "P is not a constructor"`, () => {
      const make = () =>
        new facade.Pool({ connectionString: PG_URL, [option]: () => undefined } as never)
      expect(make).toThrow(InvalidOptionError)
      expect(make).toThrow(new RegExp(`^Invalid option ${option}: .*; expected `))
    })
  }

  it('falsy function options are "not given", as pg-pool reads them', async () => {
    const pool = new facade.Pool({ connectionString: PG_URL, log: null, verify: 0 } as never)
    await pool.end()
  })

  it("postgres()'s options are checked at the call, each named", () => {
    expect(() => postgres(PG_URL, { releasedBusy: 'later' as never })).toThrow(
      /^Invalid option releasedBusy: "later"; expected 'close' or 'wait'/,
    )
    expect(() => postgres(PG_URL, { Client: {} as never })).toThrow(/^Invalid option Client: /)
    expect(() => postgres(PG_URL, 5 as never)).toThrow(/^Invalid option options: 5/)
  })

  it('postgres() accepted a misspelled option (releasedbusy) silently', () => {
    const make = () => postgres(PG_URL, { releasedbusy: 'wait' } as never)
    expect(make).toThrow(InvalidOptionError)
    expect(make).toThrow(
      /^Unknown option releasedbusy: "wait"; postgres\(\) takes only Client, releasedBusy and pooler/,
    )
  })

  it('postgres() accepted a Client that cannot be constructed (an arrow function), then failed every connect', () => {
    const make = () => postgres(PG_URL, { Client: (() => ({})) as never })
    expect(make).toThrow(InvalidOptionError)
    expect(make).toThrow(/^Invalid option Client: .*; expected a client class \(constructor\)/)
    // A class or a plain function is still taken.
    expect(() => postgres(PG_URL, { Client: pg.Client })).not.toThrow()
  })
})
