import { inspect } from 'node:util'
import mysql2Core from 'mysql2'
import mysql2Promise from 'mysql2/promise'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type MysqlConnection, type MysqlServerInfo, mysql } from '../../src/dialects/mysql.js'
import { MysqlDialect } from '../../src/dialects/mysql-dialect.js'
import { createPool, type Dialect, type Pool } from '../../src/index.js'
import { mysqlWireProxy } from '../support/mysql-wire-proxy.js'
import { describeOnServer, probe } from '../support/servers.js'
import { type Admin, myRows, mysqlTarget, uniqueName, waitFor } from './targets.js'

const status = await probe('mysql')
const target = mysqlTarget(status)

/** An error, or `undefined` when `promise` resolved. */
function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  )
}

describeOnServer(status, 'mysql dialect specifics', () => {
  let admin: Admin
  const table = uniqueName('my')
  // The factory's type leaves the optional methods optional; this one has them all.
  const dialect = mysql(status.url) as Required<Dialect<MysqlConnection>>
  const open: MysqlConnection[] = []
  const pools: Pool<MysqlConnection>[] = []

  async function connect(tag?: string): Promise<MysqlConnection> {
    const connection = await target.dialect(tag).connect(AbortSignal.timeout(5_000))
    open.push(connection)
    return connection
  }

  /** Whether the session matching `where` runs a `SELECT SLEEP` now, as seen from `via`. */
  async function sleeping(via: MysqlConnection, where: string, value: unknown): Promise<boolean> {
    const [row] = await myRows<{ n: number | string }>(
      via,
      `SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ${where} AND INFO LIKE 'SELECT SLEEP%'`,
      [value],
    )
    return Number(row!.n) === 1
  }

  /** A dialect for a fresh user with a password of its own, and one connection of it. */
  async function connectWithPassword() {
    const password = `pw-${uniqueName('x')}`
    const user = await admin.newTag()
    await admin.exec(`ALTER USER '${user}'@'%' IDENTIFIED BY '${password}'`)
    const url = new URL(status.url)
    const d = mysql({ host: url.hostname, port: Number(url.port || 3306), user, password })
    const connection = await d.connect(AbortSignal.timeout(5_000))
    open.push(connection)
    return { user, password, dialect: d, connection }
  }

  beforeAll(async () => {
    admin = await target.admin!()
    await admin.exec(`CREATE TABLE ${table} (id int PRIMARY KEY) ENGINE=InnoDB`)
    await admin.exec(`INSERT INTO ${table} VALUES (1)`)
  })

  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close({ timeout: 2_000 })))
  })

  afterAll(async () => {
    await Promise.all(open.map((c) => dialect.close(c)))
    await admin.exec(`DROP TABLE IF EXISTS ${table}`)
    await admin.close()
  })

  describe('isDisconnect', () => {
    it('is false for errors that leave the session usable: syntax, duplicate key, lock wait timeout, KILL QUERY', async () => {
      const a = await connect()
      const b = await connect()
      const syntax = await failure(myRows(a, 'SELEC 1'))
      const duplicate = await failure(myRows(a, `INSERT INTO ${table} VALUES (1)`))
      await myRows(a, 'START TRANSACTION')
      await myRows(a, `SELECT * FROM ${table} WHERE id = 1 FOR UPDATE`)
      await myRows(b, 'SET SESSION innodb_lock_wait_timeout = 1')
      const lock = await failure(myRows(b, `UPDATE ${table} SET id = 1 WHERE id = 1`))
      await myRows(a, 'ROLLBACK')
      const id = (await myRows<{ id: number }>(b, 'SELECT CONNECTION_ID() AS id'))[0]!.id
      const pending = failure(myRows(b, 'SELECT SLEEP(5)'))
      await waitFor(() => sleeping(a, 'ID = ?', id))
      await admin.exec(`KILL QUERY ${Number(id)}`)
      const interrupted = await pending
      const errors = [syntax, duplicate, lock]
      expect(errors.map((e) => (e as { errno: number }).errno)).toEqual([1064, 1062, 1205])
      for (const error of errors) expect(dialect.isDisconnect(error)).toBe(false)
      // KILL QUERY ends the statement, not the session: MariaDB answers SLEEP() with 1 instead
      // of an error; MySQL with 1317. Either way it is no disconnect, and the session lives on.
      if (interrupted !== undefined) {
        expect(interrupted).toMatchObject({ errno: 1317 })
        expect(dialect.isDisconnect(interrupted)).toBe(false)
      }
      expect(await myRows(b, 'SELECT 1 AS one')).toEqual([{ one: 1 }])
    })

    it('is true for a query whose connection was KILLed, and for the next query on it', async () => {
      const tag = await admin.newTag()
      const connection = await connect(tag)
      const pending = failure(myRows(connection, 'SELECT SLEEP(5)'))
      const watcher = await connect()
      await waitFor(() => sleeping(watcher, 'USER = ?', tag))
      expect(await admin.killAll(tag)).toBe(1)
      const killed = await pending
      expect(killed).toBeInstanceOf(Error)
      expect(dialect.isDisconnect(killed)).toBe(true)
      const next = await failure(myRows(connection, 'SELECT 1'))
      expect(next).toBeInstanceOf(Error)
      expect(dialect.isDisconnect(next)).toBe(true)
    })

    it('is true for an idle connection closed by wait_timeout, as watch() reports it', async () => {
      const connection = await connect()
      const deaths: unknown[] = []
      dialect.watch(connection, (error) => deaths.push(error))
      await myRows(connection, 'SET SESSION wait_timeout = 1')
      await waitFor(() => deaths.length > 0, 4_000)
      for (const death of deaths) {
        if (death !== undefined) expect(dialect.isDisconnect(death)).toBe(true)
      }
      const next = await failure(myRows(connection, 'SELECT 1'))
      expect(dialect.isDisconnect(next)).toBe(true)
    })

    it('classifies errnos, codes and fatal errors it cannot provoke here', () => {
      const yes = [
        { errno: 2006, code: 'CR_SERVER_GONE_ERROR' },
        { errno: 2013, code: 'CR_SERVER_LOST' },
        { errno: 4031, code: 'ER_CLIENT_INTERACTION_TIMEOUT' },
        { errno: 1053, code: 'ER_SERVER_SHUTDOWN' },
        { errno: 1927, code: 'ER_CONNECTION_KILLED' },
        { code: 'PROTOCOL_CONNECTION_LOST', fatal: true },
        Object.assign(new Error("Can't add new command when connection is in closed state"), {
          fatal: true,
        }),
        Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104 }),
        Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32 }),
        Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT' }),
        new Error('wrapped by an ORM', { cause: { errno: 2013 } }),
      ]
      const no = [
        { errno: 1064, code: 'ER_PARSE_ERROR' },
        { errno: 1062, code: 'ER_DUP_ENTRY' },
        { errno: 1205, code: 'ER_LOCK_WAIT_TIMEOUT' },
        { errno: 1213, code: 'ER_LOCK_DEADLOCK' },
        { errno: 1317, code: 'ER_QUERY_INTERRUPTED' },
        { errno: 3024, code: 'ER_QUERY_TIMEOUT' },
        { code: 'ER_NO_SUCH_TABLE', fatal: false },
        null,
        undefined,
        'PROTOCOL_CONNECTION_LOST',
      ]
      for (const error of yes) expect(dialect.isDisconnect(error), inspect(error)).toBe(true)
      for (const error of no) expect(dialect.isDisconnect(error), inspect(error)).toBe(false)
    })
  })

  describe("'rollback' reset without a round trip when no transaction can be open", () => {
    /** Whether the server has a transaction open for this connection (MariaDB's @@in_transaction). */
    async function inTransaction(connection: MysqlConnection): Promise<boolean> {
      const [row] = await myRows<{ open: number }>(connection, 'SELECT @@in_transaction AS open')
      return Number(row?.open) === 1
    }

    it('sends nothing after autocommitted reads and writes', async () => {
      const connection = await connect()
      // As the pool does on its first connection: it tells the dialect that no init_connect can
      // have turned autocommit off after the greeting.
      await dialect.inspect(connection, AbortSignal.timeout(5_000))
      await myRows(connection, `SELECT * FROM ${table}`)
      await myRows(connection, `UPDATE ${table} SET id = id WHERE id = 1`)
      await myRows(connection, `/* a comment */ (SELECT 1)`)
      expect(dialect.reset(connection, 'rollback')).toBeUndefined()
    })

    it('rolls back once when autocommit is known only from the greeting, then sends nothing', async () => {
      const fresh = mysql(status.url) as Required<Dialect<MysqlConnection>>
      const connection = await fresh.connect(AbortSignal.timeout(5_000))
      try {
        await myRows(connection, 'SELECT 1')
        const first = fresh.reset(connection, 'rollback')
        expect(first).toBeInstanceOf(Promise)
        await first
        await myRows(connection, 'SELECT 1')
        expect(fresh.reset(connection, 'rollback')).toBeUndefined()
      } finally {
        await fresh.close(connection)
      }
    })

    it('trusts the greeting, once the limits are read, for connections made before too; not after SET autocommit', async () => {
      const fresh = mysql(status.url) as Required<Dialect<MysqlConnection>>
      const early = await fresh.connect(AbortSignal.timeout(5_000))
      const manual = await fresh.connect(AbortSignal.timeout(5_000))
      const first = await fresh.connect(AbortSignal.timeout(5_000))
      try {
        await myRows(early, 'SELECT 1')
        // A borrower turned autocommit off, and a release already reported it.
        await myRows(manual, 'SET autocommit = 0')
        await fresh.reset(manual, 'rollback')
        // The pool reads the limits on its first connection: no init_connect on this server.
        await fresh.inspect(first, AbortSignal.timeout(5_000))
        expect(fresh.reset(early, 'rollback')).toBeUndefined()
        await myRows(manual, 'SELECT 1')
        const again = fresh.reset(manual, 'rollback')
        expect(again).toBeInstanceOf(Promise)
        await again
      } finally {
        await Promise.all([early, manual, first].map((c) => fresh.close(c)))
      }
    })

    it("rolls back after BEGIN, and A's row never reaches the next borrower", async () => {
      const connection = await connect()
      await myRows(connection, 'BEGIN')
      await myRows(connection, `INSERT INTO ${table} VALUES (42)`)
      expect(await inTransaction(connection)).toBe(true)
      const reset = dialect.reset(connection, 'rollback')
      expect(reset).toBeInstanceOf(Promise)
      await reset
      expect(await inTransaction(connection)).toBe(false)
      expect(await myRows(connection, `SELECT id FROM ${table} WHERE id = 42`)).toEqual([])
      // Clean again: the next idle release sends nothing.
      expect(dialect.reset(connection, 'rollback')).toBeUndefined()
    })

    it('treats a ; (several statements) and CALL as possibly opening a transaction', async () => {
      const connection = await connect()
      await failure(myRows(connection, 'SELECT 1; BEGIN'))
      expect(dialect.reset(connection, 'rollback')).toBeInstanceOf(Promise)
      await myRows(connection, 'SELECT 1')
      await failure(myRows(connection, 'CALL no_such_procedure()'))
      expect(dialect.reset(connection, 'rollback')).toBeInstanceOf(Promise)
    })

    it("regression: MariaDB's SET STATEMENT … FOR BEGIN left a transaction open that the release did not roll back", async () => {
      const connection = await connect()
      const opened = await failure(
        myRows(connection, 'SET STATEMENT max_statement_time = 0 FOR BEGIN'),
      )
      // MySQL has no SET STATEMENT: there the statement fails and opens nothing to leak.
      if (opened === undefined) expect(await inTransaction(connection)).toBe(true)
      const reset = dialect.reset(connection, 'rollback')
      expect(reset).toBeInstanceOf(Promise)
      await reset
      expect(await inTransaction(connection)).toBe(false)
    })

    it('after SET autocommit = 0, rolls back on every release, since every read opens a transaction', async () => {
      const connection = await connect()
      await myRows(connection, 'SET autocommit = 0')
      await dialect.reset(connection, 'rollback')
      await myRows(connection, `SELECT * FROM ${table}`)
      expect(await inTransaction(connection)).toBe(true)
      const reset = dialect.reset(connection, 'rollback')
      expect(reset).toBeInstanceOf(Promise)
      await reset
      expect(await inTransaction(connection)).toBe(false)
      await myRows(connection, 'SET autocommit = 1')
      await dialect.reset(connection, 'rollback')
      await myRows(connection, `SELECT * FROM ${table}`)
      expect(dialect.reset(connection, 'rollback')).toBeUndefined()
    })
  })

  it('regression: await connection.query() threw mysql2\'s "You have tried to call .then() … not a promise"', async () => {
    // The dialect lent mysql2's callback connection, whose query() returns a Query that refuses
    // to be awaited: the quickstart's `await connection.query(sql)` failed on MySQL.
    const pool = createPool({ dialect, max: 1 })
    pools.push(pool)
    const [rows, fields] = await pool.use((connection) => connection.query('SELECT 1 AS one'))
    expect(rows).toEqual([{ one: 1 }])
    expect((fields as Array<{ name: string }>).map((f) => f.name)).toEqual(['one'])
    const [executed] = await pool.use((c) => c.execute('SELECT ? AS two', [2]))
    expect(executed).toEqual([{ two: 2 }])
    await expect(pool.use((c) => c.query('SELEC nonsense'))).rejects.toMatchObject({ errno: 1064 })
    expect(pool.stats()).toMatchObject({ leased: 0, invalidated: 0 })
  })

  it('lends a genuine mysql2/promise connection, the same object for the same physical connection', async () => {
    const PromiseConnection = (mysql2Promise as unknown as { PromiseConnection: new () => object })
      .PromiseConnection
    const pool = createPool({ dialect, max: 1 })
    pools.push(pool)
    const first = await pool.use(async (connection) => {
      expect(connection).toBeInstanceOf(PromiseConnection)
      // The callback connection under it, for code written for mysql2's callback API.
      expect(connection.connection).toBeInstanceOf(mysql2Core.Connection)
      expect(connection.threadId).toBe(connection.connection.threadId)
      // Code written for the callback connection's `c.promise().query()` keeps working.
      expect(connection.promise()).toBe(connection)
      const [rows] = await connection.promise().query('SELECT 3 AS three')
      expect(rows).toEqual([{ three: 3 }])
      // As on mysql2/promise, a callback is refused with mysql2's own message.
      expect(() =>
        (connection.query as unknown as (sql: string, cb: () => void) => unknown)(
          'SELECT 1',
          () => {},
        ),
      ).toThrow(/Callback function is not available with promise clients/)
      const viaCore = await new Promise((resolve, reject) =>
        connection.connection.query('SELECT 4 AS four', (e, r) => (e ? reject(e) : resolve(r))),
      )
      expect(viaCore).toEqual([{ four: 4 }])
      return connection
    })
    expect(await pool.use(async (connection) => connection)).toBe(first)
    expect(pool.stats().created).toBe(1)
  })

  it('forwards a member the callback dialect gains later, with the lent connection unwrapped', async () => {
    // The promise dialect writes out today's Dialect members; a newer core's hooks (added to the
    // callback dialect) must reach it too, or the pool would silently skip them.
    const proto = MysqlDialect.prototype as unknown as Record<string, unknown>
    const seen: unknown[] = []
    proto.lateHook = function (this: unknown, connection: unknown, other: unknown, n: unknown) {
      seen.push(this, connection, other, n)
      return 'done'
    }
    try {
      const d = mysql(status.url) as unknown as { lateHook(...args: unknown[]): unknown }
      const lent = await connect()
      expect(d.lateHook(lent, 'other', 7)).toBe('done')
      // Called on the callback dialect, with the core connection; other arguments as given.
      expect(seen[0]).toBeInstanceOf(proto.constructor as new () => object)
      expect(seen.slice(1)).toEqual([lent.connection, 'other', 7])
    } finally {
      delete proto.lateHook
    }
  })

  it('a transaction through the lent connection rolls back on release; the next borrower sees nothing', async () => {
    const pool = createPool({ dialect, max: 1 })
    pools.push(pool)
    await pool.use(async (c) => {
      await c.beginTransaction()
      await c.query(`INSERT INTO ${table} VALUES (77)`)
    })
    const [rows] = await pool.use((c) => c.query(`SELECT id FROM ${table} WHERE id = 77`))
    expect(rows).toEqual([])
    const [open] = await pool.use((c) => c.query('SELECT @@in_transaction AS open'))
    expect(open).toEqual([{ open: 0 }])
  })

  it("falls back to COM_CHANGE_USER for 'session' when the driver has no reset()", async () => {
    const connection = await connect()
    // An older mysql2: hide the method on this instance only.
    Object.defineProperty(connection.connection, 'reset', { value: undefined, configurable: true })
    await myRows(connection, "SET @leak = 'alice'")
    await myRows(connection, 'USE information_schema')
    await dialect.reset(connection, 'session')
    expect(await myRows(connection, 'SELECT @leak AS v, DATABASE() AS db')).toEqual([
      { v: null, db: new URL(status.url).pathname.slice(1) },
    ])
  })

  it('keeps changeUser() working with the credentials off the config', async () => {
    const { user, password, connection } = await connectWithPassword()
    expect(inspect(connection, { depth: Number.POSITIVE_INFINITY })).not.toContain(password)
    await myRows(connection, "SET @leak = 'alice'")
    // A user's own changeUser({}) re-authenticates with the stashed password.
    await new Promise<void>((resolve, reject) =>
      connection.connection.changeUser({}, (error) => (error ? reject(error) : resolve())),
    )
    expect(await myRows(connection, 'SELECT @leak AS v, CURRENT_USER() AS u')).toEqual([
      { v: null, u: `${user}@%` },
    ])
    expect(inspect(connection, { depth: Number.POSITIVE_INFINITY })).not.toContain(password)
  })

  it("regression: a 'session' reset on a mysql2 without reset() showed the password on the ChangeUser command while it ran", async () => {
    // A mysql2 older than reset() (#4148, 2026): the reset falls back to changeUser(), whose
    // command object holds the password until the server answers. The oldest-driver run found it.
    const { user, password, dialect: d, connection } = await connectWithPassword()
    Object.defineProperty(connection.connection, 'reset', { value: undefined, configurable: true })
    const reset = d.reset!(connection, 'session')
    // The command is on the wire now, the server's answer not yet read.
    const during = inspect(connection, { depth: Number.POSITIVE_INFINITY })
    await reset
    expect(during).toContain('ChangeUser')
    expect(during).not.toContain(password)
    expect(await myRows(connection, 'SELECT CURRENT_USER() AS u')).toEqual([{ u: `${user}@%` }])
  })

  it("restores the handshake's sql_mode after COM_RESET_CONNECTION, which MariaDB drops", async () => {
    const connection = await connect()
    const [before] = await myRows<{ mode: string }>(connection, 'SELECT @@SESSION.sql_mode AS mode')
    await dialect.reset(connection, 'session')
    expect(await myRows(connection, 'SELECT @@SESSION.sql_mode AS mode')).toEqual([before])
  })

  it("puts one 'error' listener on a connection, as mysql2's pool does, and still reports a fatal error", async () => {
    const core = new MysqlDialect(status.url)
    const connection = await core.connect(AbortSignal.timeout(5_000))
    const deaths: unknown[] = []
    core.watch(connection, (error) => deaths.push(error))
    try {
      expect(connection.listenerCount('error')).toBe(1)
      expect(connection.listenerCount('connect')).toBe(0)
      const fatal = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', fatal: true })
      connection.emit('error', fatal)
      connection.emit('error', new Error('not fatal'))
      expect(deaths).toEqual([fatal])
    } finally {
      await core.close(connection)
    }
  })

  it("sends a 'session' reset's USE only after something that may have changed the database", async () => {
    const proxy = await mysqlWireProxy(status.url)
    const d = mysql(proxy.url) as Required<Dialect<MysqlConnection>>
    const connection = await d.connect(AbortSignal.timeout(5_000))
    try {
      const sent = proxy.connections[0]!.commands
      await myRows(connection, 'SELECT 1 AS n')
      await d.reset(connection, 'session')
      expect(sent.filter((c) => /^USE /.test(c))).toEqual([])
      await myRows(connection, 'USE information_schema')
      await d.reset(connection, 'session')
      const db = new URL(status.url).pathname.slice(1)
      expect(await myRows(connection, 'SELECT DATABASE() AS db')).toEqual([{ db }])
      // Back where it started: the next reset needs no USE again.
      await d.reset(connection, 'session')
      expect(sent.filter((c) => /^USE /.test(c))).toEqual([
        'USE information_schema',
        `USE \`${db}\``,
      ])
    } finally {
      await d.close(connection)
      await proxy.close()
    }
  })

  it('reads the session wait_timeout, max_connections, max_user_connections and the version', async () => {
    const connection = await connect()
    await myRows(connection, 'SET SESSION wait_timeout = 42')
    const info = (await dialect.inspect(connection, AbortSignal.timeout(1_000))) as MysqlServerInfo
    expect(info).toEqual({
      version: expect.stringMatching(/^\d+\.\d+/),
      maxConnections: await admin.maxConnections(),
      maxUserConnections: undefined,
      idleCutoffMs: 42_000,
      idleCutoffSetting: 'wait_timeout',
    })
  })

  it("reads the server's limits whatever the connection's rowsAsArray and nestTables say", async () => {
    const shaped = mysql({ uri: status.url, rowsAsArray: true, nestTables: true }) as Required<
      Dialect<MysqlConnection>
    >
    const connection = await shaped.connect(AbortSignal.timeout(5_000))
    try {
      const info = (await shaped.inspect(connection, AbortSignal.timeout(5_000))) as MysqlServerInfo
      expect(info.maxConnections).toBe(await admin.maxConnections())
      expect(info.idleCutoffMs).toBeGreaterThan(0)
      // The borrower's own queries keep the connection's shape.
      const [rows] = await connection.query('SELECT 1 AS n')
      expect(Array.isArray((rows as unknown[])[0])).toBe(true)
    } finally {
      await shaped.close(connection)
    }
  })

  it('passes TLS options to mysql2: ssl against a server without TLS fails as mysql2 says', async () => {
    const url = new URL(status.url)
    const d = mysql({
      host: url.hostname,
      port: Number(url.port || 3306),
      user: decodeURIComponent(url.username),
      ssl: { rejectUnauthorized: true },
    })
    const error = await failure(d.connect(AbortSignal.timeout(5_000)))
    expect(String((error as Error).message)).toMatch(/SSL|TLS|secure/i)
  })
})
