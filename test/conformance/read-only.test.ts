import type pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type MysqlConnection, mysql } from '../../src/dialects/mysql.js'
import { postgres } from '../../src/dialects/postgres.js'
import {
  ConnectError,
  createPool,
  type Dialect,
  type Pool,
  type ServerRole,
  WrongRoleError,
} from '../../src/index.js'
import { describeOnServer, probe } from '../support/servers.js'
import { uniqueName } from './targets.js'

// Issue 17, demoted writers, on the shared servers: a session made read-only in a pool of the
// test's own produces the servers' real read-only errors (no server is reconfigured), and each
// dialect must recognise them, retire the connection and every older one, and read the role.

/** What the test needs of one server: its dialect and a few statements in its dialect of SQL. */
interface Flavor<C> {
  name: string
  dialect: () => Dialect<C>
  /** Runs a statement; resolves with the rows. */
  query(connection: C, sql: string): Promise<Array<Record<string, unknown>>>
  /** This session's server-side id. */
  sessionId(connection: C): Promise<number>
  /** Makes the session read-only: its next write fails with the server's read-only error. */
  readOnlySession: string
  /** What the driver's error carries: `code` for pg, `errno` for mysql2. */
  refusal: Record<string, unknown>
  /** The session statement that makes the role the dialect reads read-only, if any. */
  readOnlyRole?: string
  /**
   * Whose refusal the read-only session's is: PostgreSQL's session default is reported as the
   * server's role would be (the server's); MySQL's 1792 is a read-only transaction (the session's).
   */
  scope: 'server' | 'session'
}

const postgresFlavor = (url: string): Flavor<pg.Client> => ({
  name: 'postgres',
  dialect: () => postgres(url),
  query: async (c, sql) => (await c.query(sql)).rows,
  sessionId: async (c) => Number((await c.query('SELECT pg_backend_pid() AS id')).rows[0].id),
  readOnlySession: 'SET SESSION default_transaction_read_only = on',
  refusal: { code: '25006' },
  readOnlyRole: 'SET SESSION default_transaction_read_only = on',
  scope: 'server',
})

const mysqlFlavor = (url: string): Flavor<MysqlConnection> => ({
  name: 'mysql',
  dialect: () => mysql(url),
  query: async (c, sql) => (await c.query(sql))[0] as Array<Record<string, unknown>>,
  sessionId: async (c) => c.connection.threadId!,
  readOnlySession: 'SET SESSION TRANSACTION READ ONLY',
  refusal: { errno: 1792, code: 'ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION' },
  scope: 'session',
})

function suite<C>(flavor: Flavor<C>, url: string): void {
  const table = uniqueName(`ro_${flavor.name}`)
  let admin: Pool<C>
  const pools: Pool<C>[] = []
  const make = (
    options: { max?: number; targetSessionAttrs?: 'read-write' | 'read-only' } = {},
  ) => {
    const pool = createPool<C>({ dialect: flavor.dialect(), max: 3, ...options })
    pools.push(pool)
    return pool
  }

  beforeAll(async () => {
    admin = createPool<C>({ dialect: flavor.dialect(), max: 1 })
    await admin.use((c) => flavor.query(c, `CREATE TABLE ${table} (id int)`))
  })
  afterAll(async () => {
    for (const pool of pools) await pool.destroy()
    await admin.use((c) => flavor.query(c, `DROP TABLE IF EXISTS ${table}`))
    await admin.close()
    void url
  })

  /** Opens `n` connections at once and gives them back; returns their session ids. */
  async function warm(pool: Pool<C>, n: number): Promise<number[]> {
    const leases = await Promise.all(Array.from({ length: n }, () => pool.acquire()))
    const ids = await Promise.all(leases.map((l) => flavor.sessionId(l.connection)))
    for (const lease of leases) lease.release()
    return ids
  }

  it("the server's read-only error reaches the caller as the driver's, and retires its connection (and for a server-level refusal every one made before it)", async () => {
    const pool = make()
    const before = await warm(pool, 3)
    const reasons: string[] = []
    pool.on('invalidate', (e) => reasons.push(e.reason))
    const error = await pool
      .use(async (c) => {
        await flavor.query(c, flavor.readOnlySession)
        await flavor.query(c, `INSERT INTO ${table} VALUES (1)`)
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    expect(error).toMatchObject(flavor.refusal)
    expect(pool.options.dialect.isReadOnly?.(error)).toBe(true)
    expect(pool.options.dialect.readOnlyScope?.(error)).toBe(flavor.scope)
    expect(reasons).toEqual(['read-only'])
    const after = await warm(pool, 3)
    if (flavor.scope === 'server') {
      // None of the three sessions from before serves again.
      expect(after.filter((id) => before.includes(id))).toEqual([])
      expect(reasons.sort()).toEqual(['read-only', 'stale', 'stale'])
    } else {
      // Only the refused one is gone: the other two serve again.
      expect(after.filter((id) => before.includes(id))).toHaveLength(2)
      expect(reasons).toEqual(['read-only'])
    }
  })

  it('through a lease given back with a plain release(): the dialect saw the refusal on the wire', async () => {
    const pool = make()
    const before = await warm(pool, 2)
    const events: Array<{ reason: string; error: unknown }> = []
    pool.on('invalidate', (e) => events.push({ reason: e.reason, error: e.error }))
    const lease = await pool.acquire()
    await flavor.query(lease.connection, flavor.readOnlySession)
    await expect(
      flavor.query(lease.connection, `INSERT INTO ${table} VALUES (2)`),
    ).rejects.toMatchObject(flavor.refusal)
    lease.release()
    expect(events.map((e) => e.reason)).toEqual(['read-only'])
    expect(pool.options.dialect.isReadOnly?.(events[0]!.error)).toBe(true)
    const after = await warm(pool, 2)
    expect(after.filter((id) => before.includes(id))).toHaveLength(
      flavor.scope === 'server' ? 0 : 1,
    )
  })

  it('an ordinary SQL error is not a read-only one: the connection is reused', async () => {
    const pool = make({ max: 1 })
    const [id] = await warm(pool, 1)
    const reasons: string[] = []
    pool.on('invalidate', (e) => reasons.push(e.reason))
    const error = await pool
      .use((c) => flavor.query(c, 'SELECT * FROM no_such_table_ro'))
      .catch((e) => e)
    expect(pool.options.dialect.isReadOnly?.(error)).toBe(false)
    expect(await warm(pool, 1)).toEqual([id])
    expect(reasons).toEqual([])
  })

  it("with targetSessionAttrs 'read-only', a refused write is an ordinary statement error: nothing is retired", async () => {
    // The shared server is read-write, which a replica pool's role check refuses: this pool's
    // dialect reads every server as read-only, so that it stands for a replica's.
    const dialect = flavor.dialect()
    ;(dialect as { role: Dialect<C>['role'] }).role = async () => 'read-only'
    const replica = createPool<C>({ dialect, max: 2, targetSessionAttrs: 'read-only' })
    pools.push(replica)
    const before = await warm(replica, 2)
    const reasons: string[] = []
    replica.on('invalidate', (e) => reasons.push(e.reason))
    const lease = await replica.acquire()
    await flavor.query(lease.connection, flavor.readOnlySession)
    await expect(
      flavor.query(lease.connection, `INSERT INTO ${table} VALUES (3)`),
    ).rejects.toMatchObject(flavor.refusal)
    lease.release()
    await expect(
      replica.use(async (c) => {
        await flavor.query(c, flavor.readOnlySession)
        await flavor.query(c, `INSERT INTO ${table} VALUES (4)`)
      }),
    ).rejects.toMatchObject(flavor.refusal)
    expect((await warm(replica, 2)).sort()).toEqual(before.sort())
    expect(reasons).toEqual([])
  })

  it("role() reads the shared server as read-write; targetSessionAttrs 'read-only' refuses it and retries", async () => {
    const dialect = flavor.dialect()
    const connection = await dialect.connect(AbortSignal.timeout(5_000))
    try {
      expect(await dialect.role!(connection, AbortSignal.timeout(5_000))).toBe<ServerRole>(
        'read-write',
      )
    } finally {
      await dialect.close(connection)
    }
    const pool = make({ targetSessionAttrs: 'read-only' })
    const errors: Error[] = []
    pool.on('connectError', (e) => errors.push(e.error))
    await expect(pool.acquire({ timeout: 300 })).rejects.toThrow(/Timed out/)
    expect(errors.length).toBeGreaterThanOrEqual(1)
    expect(errors[0]).toBeInstanceOf(ConnectError)
    expect(errors[0]!.cause).toBeInstanceOf(WrongRoleError)
    expect(errors[0]!.cause).toMatchObject({ role: 'read-write', target: 'read-only' })
    // Never lent: whatever it holds is a connect still being checked, or being closed.
    expect(pool.stats()).toMatchObject({ idle: 0, leased: 0, acquired: 0 })
  })
}

const pgStatus = await probe('postgres')
describeOnServer(pgStatus, 'demoted writers: postgres', () => {
  suite(postgresFlavor(pgStatus.url), pgStatus.url)

  it('role() reads the parameter status the server sent at connect: no query', async () => {
    const dialect = postgres(pgStatus.url)
    const client = await dialect.connect(AbortSignal.timeout(5_000))
    try {
      const query = client.query
      ;(client as { query: unknown }).query = () => {
        throw new Error('role() sent a query')
      }
      expect(await dialect.role!(client, AbortSignal.timeout(5_000))).toBe('read-write')
      ;(client as { query: unknown }).query = query
      // The session changes its default: the server reports it, and role() follows.
      await client.query('SET SESSION default_transaction_read_only = on')
      ;(client as { query: unknown }).query = () => {
        throw new Error('role() sent a query')
      }
      expect(await dialect.role!(client, AbortSignal.timeout(5_000))).toBe('read-only')
      ;(client as { query: unknown }).query = query
    } finally {
      await dialect.close(client)
    }
  })

  it("targetSessionAttrs 'read-write' closes a connection whose session is read-only by default, and lends the next", async () => {
    // The first connection's session is read-only from its startup packet on, as a demoted
    // writer's would be (the role is read before onConnect, so onConnect cannot set it).
    const readOnlyUrl = new URL(pgStatus.url)
    readOnlyUrl.searchParams.set('options', '-c default_transaction_read_only=on')
    const dialect = postgres(pgStatus.url)
    const readOnly = postgres(readOnlyUrl.toString())
    const connect = dialect.connect.bind(dialect)
    let n = 0
    dialect.connect = (signal) => (++n === 1 ? readOnly.connect(signal) : connect(signal))
    const onConnect: number[] = []
    const pool = createPool<pg.Client>({
      dialect,
      max: 1,
      targetSessionAttrs: 'read-write',
      onConnect: () => {
        onConnect.push(n)
      },
    })
    try {
      const errors: Error[] = []
      pool.on('connectError', (e) => errors.push(e.error))
      const rows = await pool.use(
        async (c) => (await c.query('SHOW default_transaction_read_only')).rows,
      )
      expect(rows).toEqual([{ default_transaction_read_only: 'off' }])
      expect(errors).toHaveLength(1)
      expect(errors[0]!.cause).toMatchObject({ code: 'LIFEGUARD_WRONG_ROLE', role: 'read-only' })
      expect(pool.stats()).toMatchObject({ total: 1, connectErrors: 1, created: 1 })
      // onConnect ran only on the connection that was lent.
      expect(onConnect).toEqual([2])
    } finally {
      await pool.destroy()
    }
  })

  it('an explicit read-only transaction is the session’s refusal: only its connection is retired', async () => {
    const pool = createPool<pg.Client>({ dialect: postgres(pgStatus.url), max: 3 })
    const table = uniqueName('ro_txn')
    try {
      await pool.use((c) => c.query(`CREATE TABLE ${table} (id int)`))
      const pids = async () => {
        const leases = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
        const ids = await Promise.all(
          leases.map(
            async (l) =>
              (await l.connection.query('SELECT pg_backend_pid() AS p')).rows[0].p as number,
          ),
        )
        for (const lease of leases) lease.release()
        return ids
      }
      const before = await pids()
      const reasons: string[] = []
      pool.on('invalidate', (e) => reasons.push(e.reason))
      const error = await pool
        .use(async (c) => {
          await c.query('BEGIN READ ONLY')
          await c.query(`INSERT INTO ${table} VALUES (1)`)
        })
        .catch((e: unknown) => e)
      expect(error).toMatchObject({ code: '25006' })
      expect(reasons).toEqual(['read-only'])
      expect((await pids()).filter((p) => before.includes(p))).toHaveLength(2)
      expect(reasons).toEqual(['read-only'])
    } finally {
      await pool.use((c) => c.query(`DROP TABLE IF EXISTS ${table}`)).catch(() => {})
      await pool.destroy()
    }
  })
})

const myStatus = await probe('mysql')
describeOnServer(myStatus, 'demoted writers: mysql', () => {
  suite(mysqlFlavor(myStatus.url), myStatus.url)

  it('1290 from --secure-file-priv is not a read-only refusal: nothing is retired', async () => {
    const pool = createPool<MysqlConnection>({ dialect: mysql(myStatus.url), max: 2 })
    try {
      const ids = async () => {
        const leases = await Promise.all([pool.acquire(), pool.acquire()])
        const out = leases.map((l) => l.connection.connection.threadId)
        for (const lease of leases) lease.release()
        return out
      }
      const before = await ids()
      const reasons: string[] = []
      pool.on('invalidate', (e) => reasons.push(e.reason))
      // The shared MariaDB runs with secure_file_priv NULL: no file may be written.
      const error = await pool
        .use((c) => c.query(`SELECT 1 INTO OUTFILE '/nonexistent-${uniqueName('d')}/x'`))
        .catch((e: unknown) => e)
      expect(error).toMatchObject({ errno: 1290 })
      expect((error as { sqlMessage: string }).sqlMessage).toMatch(/--secure-file-priv/)
      expect(pool.options.dialect.isReadOnly?.(error)).toBe(false)
      expect((await ids()).sort()).toEqual(before.sort())
      expect(reasons).toEqual([])
    } finally {
      await pool.destroy()
    }
  })
})
