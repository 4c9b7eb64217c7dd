import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { closedPort } from './ports.js'
import type { ServerStatus } from './servers.js'
import { portOpen } from './throwaway-server.js'

/** How a throwaway PgBouncer pools its server connections (PgBouncer's `pool_mode`). */
export type BouncerPoolMode = 'transaction' | 'session'

/** What to start: the pool mode and the few settings the tests vary. */
export interface ThrowawayBouncerOptions {
  /** @defaultValue `'transaction'` */
  poolMode?: BouncerPoolMode
  /** PgBouncer's `default_pool_size`: server connections per database and user. @defaultValue 10 */
  defaultPoolSize?: number
  /** PgBouncer's `max_client_conn`. @defaultValue 400 */
  maxClientConn?: number
  /** PgBouncer's `server_lifetime`, in seconds. @defaultValue 3600 (PgBouncer's own) */
  serverLifetime?: number
  /**
   * PgBouncer's `max_prepared_statements` (PgBouncer 1.21 and later); left out of the
   * configuration when undefined, since older versions refuse the key.
   */
  maxPreparedStatements?: number
}

/** A PgBouncer of the test's own, in front of the shared PostgreSQL; `stop()` removes it all. */
export interface ThrowawayBouncer {
  /** A URL for the test database through PgBouncer. */
  readonly url: string
  /** A URL for PgBouncer's admin console (`SHOW POOLS`, `SHOW SERVERS`, `SHOW CONFIG`). */
  readonly adminUrl: string
  readonly port: number
  readonly poolMode: BouncerPoolMode
  /** The installed version, such as `[1, 18, 0]`. */
  readonly version: readonly [number, number, number]
  /** Runs an admin console command (simple protocol only, as the console requires). */
  admin<T = Record<string, string>>(command: string): Promise<T[]>
  stop(): Promise<void>
}

// Debian installs it in /usr/sbin, which a non-root PATH may leave out.
const BINARY =
  process.env.PGBOUNCER ?? (existsSync('/usr/sbin/pgbouncer') ? '/usr/sbin/pgbouncer' : 'pgbouncer')

/** The installed PgBouncer's version, or `undefined` when there is none. */
export function pgbouncerVersion(): [number, number, number] | undefined {
  try {
    const out = execFileSync(BINARY, ['--version'], { encoding: 'utf8' })
    const m = /PgBouncer (\d+)\.(\d+)\.(\d+)/.exec(out)
    return m === null ? undefined : [Number(m[1]), Number(m[2]), Number(m[3])]
  } catch {
    return undefined
  }
}

/**
 * `status` (the PostgreSQL behind), marked down with the reason when pgbouncer is not installed,
 * so that `describeOnServer` skips loudly, or fails in CI, instead of failing in `beforeAll`.
 */
export function behindPgbouncer(status: ServerStatus): ServerStatus {
  if (!status.up || pgbouncerVersion() !== undefined) return status
  return {
    ...status,
    up: false,
    reason: `${BINARY} is not installed (Debian: apt-get install pgbouncer)`,
  }
}

/** Whether this PgBouncer can keep named prepared statements in transaction mode (1.21 and later). */
export function supportsPreparedStatements(version: readonly [number, number, number]): boolean {
  return version[0] > 1 || (version[0] === 1 && version[1] >= 21)
}

/**
 * Starts PgBouncer on a free port of 127.0.0.1, in front of the PostgreSQL of `postgresUrl` (the
 * shared one: user postgres, trust), from a temporary directory that `stop()` removes. It runs as
 * the `postgres` user when this process is root, since PgBouncer refuses to run as root. The user
 * of `postgresUrl` is PgBouncer's admin, so that tests can read `SHOW POOLS` and `SHOW SERVERS`.
 *
 * @example
 * ```ts
 * const bouncer = await startPgbouncer(status.url, { poolMode: 'transaction' })
 * try { … bouncer.url … } finally { await bouncer.stop() }
 * ```
 */
export async function startPgbouncer(
  postgresUrl: string,
  options: ThrowawayBouncerOptions = {},
): Promise<ThrowawayBouncer> {
  const version = pgbouncerVersion()
  if (version === undefined) {
    throw new Error(`${BINARY} is not installed (Debian: apt-get install pgbouncer)`)
  }
  const poolMode = options.poolMode ?? 'transaction'
  const server = new URL(postgresUrl)
  const user = decodeURIComponent(server.username) || 'postgres'
  const database = decodeURIComponent(server.pathname.slice(1)) || 'test'
  const dir = mkdtempSync(join(tmpdir(), 'lifeguard-pgbouncer-'))
  const asRoot = process.getuid?.() === 0
  const port = await closedPort()
  const lines = [
    '[databases]',
    `${database} = host=${server.hostname} port=${server.port || 5432} dbname=${database}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    `unix_socket_dir = ${dir}`,
    'auth_type = trust',
    `auth_file = ${join(dir, 'userlist.txt')}`,
    `admin_users = ${user}`,
    `pool_mode = ${poolMode}`,
    `default_pool_size = ${options.defaultPoolSize ?? 10}`,
    `max_client_conn = ${options.maxClientConn ?? 400}`,
    `server_lifetime = ${options.serverLifetime ?? 3600}`,
    `pidfile = ${join(dir, 'pgbouncer.pid')}`,
    // pg sends none by default, but drivers such as psycopg's and JDBC do.
    'ignore_startup_parameters = extra_float_digits',
  ]
  if (options.maxPreparedStatements !== undefined) {
    lines.push(`max_prepared_statements = ${options.maxPreparedStatements}`)
  }
  writeFileSync(join(dir, 'pgbouncer.ini'), `${lines.join('\n')}\n`)
  writeFileSync(join(dir, 'userlist.txt'), `"${user}" ""\n`)
  const owner = asRoot
    ? {
        uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
        gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
      }
    : undefined
  if (owner !== undefined) {
    for (const file of ['', 'pgbouncer.ini', 'userlist.txt']) {
      chownSync(join(dir, file), owner.uid, owner.gid)
    }
  }
  const ini = join(dir, 'pgbouncer.ini')
  // As the postgres user itself (what runuser -u postgres does), so that the signals of stop()
  // reach PgBouncer and not a wrapper that could outlive it.
  const child: ChildProcess = spawn(BINARY, ['-q', ini], {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(owner === undefined ? {} : owner),
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  let exited = false
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true
      resolve()
    }),
  )
  const remove = () => rmSync(dir, { recursive: true, force: true })
  const deadline = performance.now() + 10_000
  while (!(await portOpen(port))) {
    if (exited || performance.now() > deadline) {
      child.kill('SIGKILL')
      remove()
      throw new Error(`pgbouncer did not start on port ${port}: ${stderr.trim()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const url = `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${database}`
  const adminUrl = `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/pgbouncer`
  return {
    url,
    adminUrl,
    port,
    poolMode,
    version,
    admin: async <T>(command: string): Promise<T[]> => {
      const client = new pg.Client({ connectionString: adminUrl })
      client.on('error', () => {})
      await client.connect()
      try {
        return (await client.query(command)).rows as T[]
      } finally {
        await client.end().catch(() => {})
      }
    },
    stop: async () => {
      if (!exited) {
        // SIGTERM: PgBouncer's immediate shutdown (SIGINT would wait for clients to leave).
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000)
        await exit
        clearTimeout(timer)
      }
      remove()
    },
  }
}
