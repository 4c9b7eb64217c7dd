import { inspect } from 'node:util'
import type BetterSqlite3 from 'better-sqlite3'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { sqlite } from '../../src/dialects/sqlite.js'
import { createPool, type Dialect, InvalidOptionError, type Pool } from '../../src/index.js'
import { RUN_TAG, sqliteTarget } from './targets.js'

type Database = BetterSqlite3.Database

const BUSY_MS = 200
const target = sqliteTarget({ busyTimeout: BUSY_MS })

describe('sqlite dialect specifics', () => {
  // The factory's type leaves the optional methods optional; this one has them all.
  const dialect = target.dialect() as Required<Dialect<Database>>
  const pools: Pool<Database>[] = []
  const open: Database[] = []

  function pool(max: number): Pool<Database> {
    const p = createPool({ dialect, max })
    pools.push(p)
    return p
  }

  async function connect(): Promise<Database> {
    const db = await dialect.connect(AbortSignal.timeout(1_000))
    open.push(db)
    return db
  }

  beforeAll(async () => {
    const db = await connect()
    db.exec('CREATE TABLE items (id integer PRIMARY KEY, v text)')
    db.exec("INSERT INTO items (v) VALUES ('a'), ('b'), ('c')")
  })

  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close({ timeout: 1_000 })))
  })

  afterAll(async () => {
    for (const db of open) await dialect.close(db)
    target.cleanup!()
  })

  it('turns WAL on for every connection and sets the busy timeout', async () => {
    const db = await connect()
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    expect(db.pragma('busy_timeout', { simple: true })).toBe(BUSY_MS)
    const defaults = await sqlite(target.file).connect(AbortSignal.timeout(1_000))
    expect(defaults.pragma('busy_timeout', { simple: true })).toBe(5_000)
    defaults.close()
  })

  it('lets several connections to one WAL file read at once, while a writer commits', async () => {
    const p = pool(4)
    const leases = await Promise.all([p.acquire(), p.acquire(), p.acquire(), p.acquire()])
    const readers = leases.map((lease) => lease.connection)
    expect(new Set(readers).size).toBe(4)
    // Each reader opens a read transaction and holds its snapshot.
    for (const db of readers) {
      db.exec('BEGIN')
      expect(db.prepare('SELECT count(*) AS n FROM items').get()).toEqual({ n: 3 })
    }
    // Four open readers do not block a writer in WAL mode (a rollback journal would: SQLITE_BUSY).
    const writer = await connect()
    const started = performance.now()
    writer.prepare("INSERT INTO items (v) VALUES ('d')").run()
    expect(performance.now() - started).toBeLessThan(BUSY_MS / 2)
    for (const db of readers) {
      expect(db.prepare('SELECT count(*) AS n FROM items').get()).toEqual({ n: 3 })
    }
    for (const lease of leases) lease.release() // the 'rollback' reset ends the read transactions
    await p.use((db) => {
      expect(db.inTransaction).toBe(false)
      expect(db.prepare('SELECT count(*) AS n FROM items').get()).toEqual({ n: 4 })
    })
    writer.prepare("DELETE FROM items WHERE v = 'd'").run()
  })

  describe('a write contended past the busy timeout', () => {
    it('fails with SQLITE_BUSY after about busyTimeout, with no transaction left open (BEGIN IMMEDIATE)', async () => {
      const holder = await connect()
      holder.exec('BEGIN IMMEDIATE')
      try {
        const p = pool(1)
        await p.use((db) => {
          const started = performance.now()
          let error: unknown
          try {
            db.exec('BEGIN IMMEDIATE')
          } catch (e) {
            error = e
          }
          const elapsed = performance.now() - started
          expect(error).toMatchObject({ code: 'SQLITE_BUSY', message: 'database is locked' })
          expect(elapsed).toBeGreaterThanOrEqual(BUSY_MS - 20)
          expect(elapsed).toBeLessThan(BUSY_MS + 500)
          expect(db.inTransaction).toBe(false)
          expect(dialect.isDisconnect(error)).toBe(false)
        })
      } finally {
        holder.exec('ROLLBACK')
      }
    })

    it('leaves a deferred transaction open in the driver, which the release reset rolls back', async () => {
      const holder = await connect()
      holder.exec('BEGIN IMMEDIATE')
      const p = pool(1)
      let first: Database | undefined
      try {
        const error = await p
          .use((db) => {
            first = db
            db.exec('BEGIN')
            db.prepare("INSERT INTO items (v) VALUES ('blocked')").run()
          })
          .then(
            () => undefined,
            (e: unknown) => e,
          )
        expect(error).toMatchObject({ code: 'SQLITE_BUSY' })
      } finally {
        holder.exec('ROLLBACK')
      }
      await p.use((db) => {
        expect(db).toBe(first) // the same connection, not a replacement
        expect(db.inTransaction).toBe(false)
        db.prepare("INSERT INTO items (v) VALUES ('now it works')").run()
        db.prepare("DELETE FROM items WHERE v = 'now it works'").run()
      })
    })
  })

  describe('isDisconnect', () => {
    it('is false for constraint and syntax errors and true for a closed database', async () => {
      const db = await connect()
      const errors: unknown[] = []
      for (const sql of ['INSERT INTO items (id, v) VALUES (1, 1)', 'SELEC 1']) {
        try {
          db.exec(sql)
        } catch (error) {
          errors.push(error)
        }
      }
      expect(errors.map((e) => (e as { code: string }).code)).toEqual([
        'SQLITE_CONSTRAINT_PRIMARYKEY',
        'SQLITE_ERROR',
      ])
      for (const error of errors) expect(dialect.isDisconnect(error)).toBe(false)
      await dialect.close(db)
      const closed = await dialect.ping(db, AbortSignal.timeout(100)).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(dialect.isDisconnect(closed)).toBe(true)
      let fromDriver: unknown
      try {
        db.prepare('SELECT 1')
      } catch (error) {
        fromDriver = error
      }
      expect(dialect.isDisconnect(fromDriver)).toBe(true)
    })

    it('classifies result codes it cannot provoke here', () => {
      for (const code of [
        'SQLITE_IOERR',
        'SQLITE_IOERR_WRITE',
        'SQLITE_CORRUPT',
        'SQLITE_NOTADB',
        'SQLITE_CANTOPEN',
      ]) {
        expect(dialect.isDisconnect({ code }), code).toBe(true)
      }
      for (const code of ['SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_FULL', 'SQLITE_CONSTRAINT']) {
        expect(dialect.isDisconnect({ code }), code).toBe(false)
      }
    })
  })

  it("restores the connection's pragmas after a 'session' reset, synchronously", async () => {
    const db = await connect()
    db.pragma('cache_size = 17')
    db.defaultSafeIntegers(true)
    expect(dialect.reset(db, 'session')).toBeUndefined()
    expect(db.pragma('cache_size', { simple: true })).not.toBe(17)
    expect(typeof db.prepare('SELECT 1 AS one').pluck().get()).toBe('number')
  })

  it('validates its options', () => {
    expect(() => sqlite(target.file, { busyTimout: 1 } as never)).toThrow(
      /Unknown option busyTimout passed to sqlite; did you mean busyTimeout\?/,
    )
    expect(() => sqlite(target.file, { busyTimeout: -1 })).toThrow(InvalidOptionError)
    expect(() => sqlite(target.file, { wal: 'yes' as never })).toThrow(/Invalid option wal/)
    expect(() => sqlite(42 as never)).toThrow(/Invalid option filename: 42/)
  })

  it('keeps its configuration (the file path) out of inspect and JSON', () => {
    expect(inspect(dialect, { depth: Number.POSITIVE_INFINITY })).not.toContain(RUN_TAG)
    expect(JSON.stringify(dialect)).toBe('{"name":"sqlite"}')
  })

  it('gives sqlite::memory: a pool of one connection that keeps its data', async () => {
    const p = createPool<Database>({ url: 'sqlite::memory:' })
    pools.push(p)
    expect(p.options.max).toBe(1)
    expect(p.options.maxLifetime).toBe(Number.POSITIVE_INFINITY)
    expect(p.options.idleTimeout).toBe(Number.POSITIVE_INFINITY)
    await p.use((db) => db.exec('CREATE TABLE kept (a int)'))
    await p.use((db) => db.exec('INSERT INTO kept VALUES (1)'))
    expect(await p.use((db) => db.prepare('SELECT count(*) AS n FROM kept').get())).toEqual({
      n: 1,
    })
  })
})
