import { type ChildProcess, spawn } from 'node:child_process'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mysql2 from 'mysql2/promise'
import {
  launchOnFreePort,
  pollUntil,
  runAs,
  type ServerSettings,
  setUpOrRemove,
  type ThrowawayServer,
  userIds,
  watchdog,
} from './throwaway-server.js'

const INSTALL_DB = process.env.MARIADB_INSTALL_DB ?? 'mariadb-install-db'
const MARIADBD = process.env.MARIADBD ?? 'mariadbd'

/** Options of {@link startThrowawayMariaDb}. */
export interface ThrowawayMariaDbOptions {
  /** Extra mariadbd options (`{ 'max-connections': 50 }` → `--max-connections=50`). */
  readonly settings?: ServerSettings
}

// Small and quick to start. Commits stay durable (flush at each commit): a test that kills the
// server with -9 must find every acknowledged write.
const DEFAULTS: ServerSettings = {
  'innodb-buffer-pool-size': '16M',
  'innodb-log-file-size': '8M',
  'innodb-flush-log-at-trx-commit': 1,
  'max-connections': 300,
  'skip-name-resolve': true,
  'performance-schema': 'OFF',
}

function flags(settings: ServerSettings): string[] {
  return Object.entries(settings).map(([k, v]) => (v === true ? `--${k}` : `--${k}=${v}`))
}

/**
 * Starts a MariaDB server of its own: `mariadb-install-db` into a temp dir (owned by `mysql` when
 * this runs as root; mariadbd drops to that user), then `mariadbd --no-defaults` on 127.0.0.1 at a
 * free port, its socket and pid file in the temp dir. `root` has no password; a database `test`
 * exists. Resolves once it accepts connections. If it fails to start, nothing is left behind.
 *
 * @example
 * const server = await startThrowawayMariaDb()
 * afterAll(() => server.remove())
 * await server.crash()
 * await server.start()
 */
export async function startThrowawayMariaDb(
  options: ThrowawayMariaDbOptions = {},
): Promise<ThrowawayServer> {
  const root = process.getuid?.() === 0
  const dir = await mkdtemp(join(tmpdir(), 'lifeguard-throwaway-mariadb-'))
  const data = join(dir, 'data')
  const log = join(dir, 'server.log')
  const settings = { ...DEFAULTS, ...options.settings }
  let port = 0
  let child: ChildProcess | undefined

  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null
  const exited = (proc: ChildProcess) =>
    proc.exitCode !== null || proc.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const connect = () =>
    mysql2.createConnection({
      host: '127.0.0.1',
      port,
      user: 'root',
      database: 'mysql',
      connectTimeout: 2_000,
    })

  const server: ThrowawayServer = {
    kind: 'mysql',
    dir,
    get url() {
      return `mysql://root@127.0.0.1:${port}/test`
    },
    get port() {
      return port
    },
    get pid() {
      return running() ? child!.pid : undefined
    },
    async sql<T>(text: string, params?: unknown[]) {
      const connection = await connect()
      connection.on('error', () => {})
      try {
        await connection.query('USE test').catch(() => {})
        const [rows] = await connection.query(text, params)
        return (Array.isArray(rows) ? rows : [rows]) as T[]
      } finally {
        connection.destroy()
      }
    },
    waitUntilAccepting(timeoutMs = 30_000) {
      return pollUntil(
        `MariaDB on ${port}`,
        async () => {
          const connection = await connect()
          connection.on('error', () => {})
          try {
            await connection.query('SELECT 1')
          } finally {
            connection.destroy()
          }
        },
        timeoutMs,
      )
    },
    async restart() {
      await server.stop()
      await server.start()
    },
    async stop() {
      if (!running()) return
      const proc = child!
      // The server may cut this connection before it answers SHUTDOWN.
      await server.sql('SHUTDOWN').catch(() => {})
      await Promise.race([
        exited(proc),
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('MariaDB did not shut down in 30 s')), 30_000).unref(),
        ),
      ])
    },
    async start() {
      if (running()) throw new Error(`MariaDB on ${port} is already running`)
      const proc = spawn(
        MARIADBD,
        [
          '--no-defaults',
          ...(root ? ['--user=mysql'] : []),
          `--datadir=${data}`,
          `--port=${port}`,
          '--bind-address=127.0.0.1',
          `--socket=${join(dir, 'mysqld.sock')}`,
          `--pid-file=${join(dir, 'mysqld.pid')}`,
          `--log-error=${log}`,
          ...flags(settings),
        ],
        { stdio: 'ignore' },
      )
      proc.unref()
      proc.on('error', () => {})
      child = proc
      const gone = exited(proc).then(() => {
        throw new Error(`mariadbd exited (${proc.exitCode ?? proc.signalCode}) while starting`)
      })
      await Promise.race([server.waitUntilAccepting(60_000), gone])
    },
    async crash() {
      if (!running()) return
      const proc = child!
      proc.kill('SIGKILL')
      await exited(proc)
    },
    async remove() {
      if (running()) {
        const proc = child!
        proc.kill('SIGKILL')
        await exited(proc)
      }
      await rm(dir, { recursive: true, force: true })
    },
  }
  watchdog(dir, 'kill -9 "$(cat mysqld.pid)"')

  return setUpOrRemove(server, 'MariaDB', log, async () => {
    if (root) await chown(dir, ...(await userIds('mysql')))
    await runAs('root', INSTALL_DB, [
      '--no-defaults',
      `--datadir=${data}`,
      ...(root ? ['--user=mysql'] : []),
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      '--innodb-log-file-size=8M',
      '--innodb-buffer-pool-size=16M',
    ])
    await launchOnFreePort(log, 'Address already in use', async (free) => {
      port = free
      await server.start()
    })
    await server.sql('CREATE DATABASE test')
  })
}
