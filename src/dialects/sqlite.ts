import { basename } from 'node:path'
import type BetterSqlite3 from 'better-sqlite3'
import type {
  ConnectFailure,
  Dialect,
  DialectTarget,
  ResetMode,
  ServerInfo,
  TransactionStep,
} from '../core/dialect.js'
import { InvalidOptionError } from '../core/errors.js'
import { describe, MAX_TIMER_MS, rejectUnknownKeys } from '../core/pool-options.js'
import { DriverLoader } from './driver-loader.js'
import { causes } from './network-errors.js'

/** Thrown by this entry's factory when its driver package is not installed. */
export { DriverMissingError } from '../core/errors.js'

type Database = BetterSqlite3.Database

/** The options of {@link sqlite}. */
export interface SqliteOptions {
  /**
   * How long a statement waits for another connection's lock before it fails with `SQLITE_BUSY`,
   * in ms. better-sqlite3 waits synchronously: the event loop is blocked meanwhile.
   * @defaultValue 5000
   */
  busyTimeout?: number
  /**
   * Turns on write-ahead logging, so that readers never block the writer nor each other. It is
   * a property of the database file and stays on; in-memory and read-only databases skip it.
   * @defaultValue true
   */
  wal?: boolean
  /** Opens the database read-only. @defaultValue false */
  readonly?: boolean
  /** Fails instead of creating the file when it does not exist. @defaultValue false */
  fileMustExist?: boolean
  /** better-sqlite3's `nativeBinding`: the path of its compiled addon, for bundled apps. */
  nativeBinding?: string
}

/** better-sqlite3 as far as the dialect uses it: the `Database` class. */
type DatabaseConstructor = new (filename: string, options?: BetterSqlite3.Options) => Database

const KNOWN_KEYS = ['busyTimeout', 'wal', 'readonly', 'fileMustExist', 'nativeBinding'] as const

/** The default busy timeout, in ms: better-sqlite3's own default. */
const DEFAULT_BUSY_TIMEOUT_MS = 5_000

/**
 * Per-connection settings a borrower may change and a `'session'` reset puts back as they were
 * right after connecting. (`journal_mode` is left alone: leaving WAL needs an exclusive lock.)
 */
const RESTORED_PRAGMAS = [
  'foreign_keys',
  'defer_foreign_keys',
  'recursive_triggers',
  'query_only',
  'synchronous',
  'temp_store',
  'cache_size',
  'automatic_index',
  'reverse_unordered_selects',
  'ignore_check_constraints',
  'trusted_schema',
  'busy_timeout',
] as const

/**
 * Result codes of a failed open that a retry meets again: the file cannot be opened (missing,
 * no permission, `fileMustExist`), is not a database, or is corrupt.
 */
const PERMANENT_OPEN_CODES = ['SQLITE_CANTOPEN', 'SQLITE_NOTADB', 'SQLITE_CORRUPT', 'SQLITE_PERM']

/** better-sqlite3's error for a file in a directory that does not exist. */
const MISSING_DIRECTORY = 'Cannot open database because the directory does not exist'

/** Result codes after which a connection's database is unusable (the file vanished, broke or moved). */
const DEAD_CODE_PREFIXES = [
  'SQLITE_IOERR',
  'SQLITE_CORRUPT',
  'SQLITE_NOTADB',
  'SQLITE_CANTOPEN',
  'SQLITE_READONLY_DBMOVED',
]

/** Each connection's settings right after connecting, restored by a `'session'` reset. */
const baselines = new WeakMap<Database, Map<string, unknown>>()

/** better-sqlite3's error for a closed database. */
const CLOSED_MESSAGE = 'The database connection is not open'

const loader = new DriverLoader<DatabaseConstructor>(
  'better-sqlite3',
  'lifeguard/sqlite',
  () => import('better-sqlite3'),
)

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/** Validates the options of {@link sqlite} and fills in the defaults. */
function resolveOptions(filename: unknown, options: SqliteOptions | undefined) {
  if (typeof filename !== 'string') {
    throw new InvalidOptionError(
      'filename',
      `Invalid option filename: ${describe(filename)}; expected a file path or ":memory:"`,
    )
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]+):\/\//.exec(filename)?.[1]?.toLowerCase()
  if (scheme !== undefined) {
    // Never echo it: a URL may hold a password.
    throw new InvalidOptionError(
      'filename',
      `Invalid option filename: a "${scheme}:" URL; expected a file path or ":memory:" (for a sqlite:///path URL, use createPool({ url }))`,
    )
  }
  const o = options ?? {}
  if (typeof o !== 'object' || o === null) {
    throw new InvalidOptionError(
      'options',
      `Invalid option options: ${describe(o)}; expected an object`,
    )
  }
  rejectUnknownKeys(o, KNOWN_KEYS, 'sqlite')
  const busyTimeout = o.busyTimeout ?? DEFAULT_BUSY_TIMEOUT_MS
  if (!Number.isInteger(busyTimeout) || busyTimeout < 0 || busyTimeout > MAX_TIMER_MS) {
    throw new InvalidOptionError(
      'busyTimeout',
      `Invalid option busyTimeout: ${describe(busyTimeout)}; expected an integer number of milliseconds from 0 to ${MAX_TIMER_MS}`,
    )
  }
  for (const key of ['wal', 'readonly', 'fileMustExist'] as const) {
    const value = o[key]
    if (value !== undefined && typeof value !== 'boolean') {
      throw new InvalidOptionError(
        key,
        `Invalid option ${key}: ${describe(value)}; expected true or false`,
      )
    }
  }
  if (o.nativeBinding !== undefined && typeof o.nativeBinding !== 'string') {
    throw new InvalidOptionError(
      'nativeBinding',
      `Invalid option nativeBinding: ${describe(o.nativeBinding)}; expected a path`,
    )
  }
  return {
    filename,
    busyTimeout,
    wal: o.wal ?? true,
    driver: {
      timeout: busyTimeout,
      readonly: o.readonly ?? false,
      fileMustExist: o.fileMustExist ?? false,
      ...(o.nativeBinding === undefined ? {} : { nativeBinding: o.nativeBinding }),
    } satisfies BetterSqlite3.Options,
  }
}

/**
 * The SQLite dialect over better-sqlite3: one `Database` per pooled connection, all on the same
 * file. Every call is synchronous, so its resets never delay the hand-off.
 */
class SqliteDialect implements Dialect<Database> {
  readonly name = 'sqlite'
  readonly #settings: ReturnType<typeof resolveOptions>

  constructor(filename: string, options: SqliteOptions | undefined) {
    this.#settings = resolveOptions(filename, options)
    loader.check()
  }

  /** The file's name (not its directory) as the namespace, for the pool's default name; no server. */
  get target(): DialectTarget {
    const file = basename(this.#settings.filename)
    return file === '' ? {} : { namespace: file }
  }

  async connect(signal: AbortSignal): Promise<Database> {
    const Database = await loader.load()
    signal.throwIfAborted()
    const { filename, wal, driver } = this.#settings
    const db = new Database(filename, driver)
    try {
      if (wal && !db.readonly && !db.memory) db.pragma('journal_mode = WAL')
      const baseline = new Map<string, unknown>()
      for (const name of RESTORED_PRAGMAS) {
        const value = db.pragma(name, { simple: true })
        if (value !== undefined) baseline.set(name, value)
      }
      baselines.set(db, baseline)
    } catch (error) {
      db.close()
      throw error
    }
    return db
  }

  async close(db: Database): Promise<void> {
    try {
      db.close()
    } catch {
      // Closing an already closed database is fine; anything else leaves nothing to do here.
    }
  }

  async ping(db: Database): Promise<void> {
    // Nothing travels: an open handle on a local file is a usable one.
    if (!db.open) throw new TypeError(CLOSED_MESSAGE)
  }

  inTransaction(db: Database): boolean {
    return db.inTransaction
  }

  async transact(db: Database, step: TransactionStep): Promise<void> {
    db.exec(step === 'begin' ? 'BEGIN' : step === 'commit' ? 'COMMIT' : 'ROLLBACK')
  }

  reset(db: Database, mode: ResetMode): undefined {
    // An iterator the borrower left open (it stopped reading without `return()`) keeps the
    // connection busy: every exec() of the next borrower would throw, and a read snapshot stays
    // open. exec('') throws then, so the pool closes the connection instead of lending it.
    db.exec('')
    // ROLLBACK also ends a transaction that a failed statement left open (SQLITE_BUSY on a
    // deferred BEGIN's first write, say).
    if (db.inTransaction) db.exec('ROLLBACK')
    if (mode === 'session') this.#resetSession(db)
    return undefined
  }

  #resetSession(db: Database): void {
    for (const row of db.pragma('database_list') as Array<{ name: string }>) {
      if (row.name !== 'main' && row.name !== 'temp') {
        db.exec(`DETACH DATABASE ${quoteIdentifier(row.name)}`)
      }
    }
    const temporary = db
      .prepare(
        "SELECT type, name FROM sqlite_temp_master WHERE type IN ('trigger', 'view', 'table') ORDER BY CASE type WHEN 'trigger' THEN 0 WHEN 'view' THEN 1 ELSE 2 END",
      )
      .all() as Array<{ type: string; name: string }>
    for (const { type, name } of temporary) {
      db.exec(`DROP ${type.toUpperCase()} IF EXISTS temp.${quoteIdentifier(name)}`)
    }
    const baseline = baselines.get(db)
    if (baseline !== undefined) {
      for (const [name, value] of baseline) {
        if (db.pragma(name, { simple: true }) !== value) db.pragma(`${name} = ${String(value)}`)
      }
    }
    db.defaultSafeIntegers(false)
    db.unsafeMode(false)
  }

  classifyConnectError(error: unknown): ConnectFailure {
    for (const fields of causes(error)) {
      const code = fields.code
      if (typeof code === 'string' && PERMANENT_OPEN_CODES.some((p) => code.startsWith(p))) {
        return 'permanent'
      }
      // better-sqlite3 checks the directory itself, with a plain TypeError.
      if (fields.message === MISSING_DIRECTORY) return 'permanent'
    }
    // SQLITE_BUSY and SQLITE_LOCKED (another process holds the file), and anything unknown.
    return 'transient'
  }

  isDisconnect(error: unknown): boolean {
    for (const fields of causes(error)) {
      const code = fields.code
      if (typeof code === 'string' && DEAD_CODE_PREFIXES.some((p) => code.startsWith(p))) {
        return true
      }
      if (fields.message === CLOSED_MESSAGE) return true
    }
    return false
  }

  async inspect(db: Database): Promise<ServerInfo> {
    const version = db.prepare('SELECT sqlite_version()').pluck().get()
    // No server: no idle cut-off and no connection limit.
    return { version: typeof version === 'string' ? `SQLite ${version}` : undefined }
  }
}

/**
 * Creates the SQLite dialect: each pooled connection is a better-sqlite3 `Database` on
 * `filename`, with WAL on and a busy timeout (`busyTimeout`, 5000 ms by default). Resets are
 * synchronous: ROLLBACK when `db.inTransaction` (`'rollback'`), and for `'session'` also detach
 * attached databases, drop temporary tables, views and triggers, and restore the connection's
 * pragmas. `':memory:'` gives each connection its own private database: use a pool of one.
 * Throws `DriverMissingError` when `better-sqlite3` is not installed.
 *
 * @example
 * ```ts
 * import { createPool } from 'lifeguard'
 * import { sqlite } from 'lifeguard/sqlite'
 *
 * const pool = createPool({ dialect: sqlite('/var/lib/app/app.db', { busyTimeout: 2000 }), max: 4 })
 * const count = await pool.use((db) => db.prepare('SELECT count(*) FROM users').pluck().get())
 * ```
 */
export function sqlite(filename: string, options?: SqliteOptions): Dialect<Database> {
  return new SqliteDialect(filename, options)
}
