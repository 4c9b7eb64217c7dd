import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { appendFile, chown, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import {
  alive,
  launchOnFreePort,
  pollUntil,
  runAs,
  type ServerSettings,
  setUpOrRemove,
  type ThrowawayServer,
  userIds,
  waitForExit,
  watchdog,
} from './throwaway-server.js'

/**
 * The cluster binaries: `PG_BINDIR`, or Debian's /usr/lib/postgresql/<newest>/bin (15 here).
 * Not whatever `initdb` is on PATH: Debian puts none there (only pg_wrapper's scripts for the
 * packaged cluster), and this machine's /usr/local/bin/initdb and pg_ctl are just links to the
 * 15 binaries, which another machine may not have.
 */
function binDir(): string {
  if (process.env.PG_BINDIR !== undefined) return process.env.PG_BINDIR
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : []
  return versions[0] === undefined ? join(root, '15', 'bin') : join(root, versions[0], 'bin')
}

const BIN_DIR = binDir()

/** Options of {@link startThrowawayPostgres}. */
export interface ThrowawayPostgresOptions {
  /** Extra `postgresql.conf` settings (`{ max_connections: 50 }`), after the defaults here. */
  readonly settings?: ServerSettings
}

const DEFAULTS: ServerSettings = {
  listen_addresses: '127.0.0.1',
  shared_buffers: '16MB',
  max_connections: 200,
  // The OS keeps what was written when a server process is killed: only an OS crash would lose
  // it. synchronous_commit stays on, or a kill -9 loses commits already acknowledged.
  fsync: 'off',
  full_page_writes: 'off',
  logging_collector: 'off',
}

function confLine(name: string, value: string | number | boolean): string {
  const text = typeof value === 'string' ? `'${value.replaceAll("'", "''")}'` : String(value)
  return `${name} = ${text}\n`
}

function pgUser(): string {
  return process.getuid?.() === 0 ? 'postgres' : (process.env.USER ?? 'postgres')
}

/**
 * Starts a PostgreSQL cluster of its own: `initdb` into a temp dir (owned by `postgres` when this
 * runs as root, since PostgreSQL refuses to run as root), trust auth, listening on 127.0.0.1 only
 * at a free port, its unix socket in the temp dir, fsync off. Resolves once it accepts
 * connections, with a database `test`. If it fails to start, nothing is left behind.
 *
 * @example
 * const server = await startThrowawayPostgres()
 * afterAll(() => server.remove())
 * await server.restart({ mode: 'fast' })
 */
export async function startThrowawayPostgres(
  options: ThrowawayPostgresOptions = {},
): Promise<ThrowawayServer> {
  const user = pgUser()
  const dir = await mkdtemp(join(tmpdir(), 'lifeguard-throwaway-pg-'))
  const data = join(dir, 'data')
  const log = join(dir, 'server.log')
  let port = 0
  let pid: number | undefined

  const pgCtl = (args: readonly string[]) =>
    runAs(user, join(BIN_DIR, 'pg_ctl'), ['-D', data, '-l', log, '-w', '-t', '60', ...args])
  const readPid = async () => {
    const text = await readFile(join(data, 'postmaster.pid'), 'utf8')
    return Number(text.split('\n')[0])
  }
  // The postmaster's children (backends and auxiliary processes): after a kill -9 they must be
  // gone before the cluster starts again, or it finds its shared memory still in use. Read
  // synchronously: under 50 writers, a read per process through the event loop took 4-5 s, and the
  // kill came that late after the test had noted the event.
  const children = (parent: number) => {
    const pids: number[] = []
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      let stat = ''
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      } catch {
        continue
      }
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === parent) pids.push(Number(entry))
    }
    return pids
  }
  const connect = async () => {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'postgres',
      database: 'postgres',
      connectionTimeoutMillis: 2_000,
    })
    client.on('error', () => {})
    await client.connect()
    return client
  }

  const server: ThrowawayServer = {
    kind: 'postgres',
    dir,
    get url() {
      return `postgres://postgres@127.0.0.1:${port}/test`
    },
    get port() {
      return port
    },
    get pid() {
      return pid
    },
    async sql<T>(text: string, params?: unknown[]) {
      const client = new pg.Client({ connectionString: server.url, connectionTimeoutMillis: 5_000 })
      client.on('error', () => {})
      await client.connect()
      try {
        return (await client.query(text, params)).rows as T[]
      } finally {
        await client.end().catch(() => {})
      }
    },
    waitUntilAccepting(timeoutMs = 30_000) {
      return pollUntil(
        `PostgreSQL on ${port}`,
        async () => {
          const client = await connect()
          try {
            await client.query('SELECT 1')
          } finally {
            await client.end().catch(() => {})
          }
        },
        timeoutMs,
      )
    },
    async restart() {
      const old = pid === undefined ? [] : [pid, ...children(pid)]
      await pgCtl(['-m', 'fast', 'restart'])
      pid = await readPid()
      await waitForExit(old)
    },
    async stop() {
      if (pid === undefined) return
      const old = [pid, ...children(pid)]
      await pgCtl(['-m', 'fast', 'stop'])
      await waitForExit(old)
      pid = undefined
    },
    async start() {
      await pgCtl(['start'])
      pid = await readPid()
    },
    async crash() {
      if (pid === undefined) return
      const old = [pid, ...children(pid)]
      process.kill(pid, 'SIGKILL')
      await waitForExit(old)
      pid = undefined
      // The dead postmaster is pg_ctl's orphan, and may stay a zombie a while if this machine's
      // init is slow to reap it; the next postmaster would take it for a live one and refuse the
      // lock files. Its children are gone, so they are stale: as after a reboot.
      await rm(join(data, 'postmaster.pid'), { force: true })
      await rm(join(dir, `.s.PGSQL.${port}.lock`), { force: true })
    },
    async remove() {
      if (pid !== undefined && alive(pid)) {
        await pgCtl(['-m', 'immediate', 'stop']).catch(() => process.kill(pid!, 'SIGKILL'))
      }
      pid = undefined
      await rm(dir, { recursive: true, force: true })
    },
  }
  const pgCtlStop = `${join(BIN_DIR, 'pg_ctl')} -D data -m immediate -w stop`
  watchdog(dir, process.getuid?.() === 0 ? `runuser -u ${user} -- ${pgCtlStop}` : pgCtlStop)

  return setUpOrRemove(server, 'PostgreSQL', log, async () => {
    if (process.getuid?.() === 0) await chown(dir, ...(await userIds(user)))
    await runAs(user, join(BIN_DIR, 'initdb'), [
      '-D',
      data,
      '-U',
      'postgres',
      '-A',
      'trust',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ])
    const settings = { ...DEFAULTS, unix_socket_directories: dir, ...options.settings }
    const conf = Object.entries(settings).map(([k, v]) => confLine(k, v))
    await appendFile(join(data, 'postgresql.conf'), conf.join(''))
    await launchOnFreePort(log, 'could not bind', async (free) => {
      port = free
      await appendFile(join(data, 'postgresql.conf'), confLine('port', port))
      await server.start()
    })
    const admin = await connect()
    await admin.query('CREATE DATABASE test').finally(() => admin.end().catch(() => {}))
  })
}
