import { execFile, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { promisify } from 'node:util'
import { closedPort } from './ports.js'

/**
 * A database server of a test's own, in a temp dir on a port of its own, that the test may stop,
 * restart, crash and reconfigure (the shared servers on 5432 and 3306 are never touched).
 * `startThrowawayPostgres()` and `startThrowawayMariaDb()` make one.
 */
export interface ThrowawayServer {
  readonly kind: 'postgres' | 'mysql'
  /** An administrator's URL over TCP on 127.0.0.1 (no password): `postgres` / `root`, db `test`. */
  readonly url: string
  readonly port: number
  /** The temp dir that holds the data dir, the socket, the pid file and the server's log. */
  readonly dir: string
  /** The server's main process (the postmaster, or mariadbd) while it runs; `undefined` when down. */
  readonly pid: number | undefined
  /** Runs one statement on a fresh administrator connection (closed after) and returns its rows. */
  sql<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>
  /**
   * Resolves with `performance.now()` at the first moment a new connection gets an answer to
   * `SELECT 1` (polled every 10 ms); rejects after `timeoutMs` (default 30 s).
   */
  waitUntilAccepting(timeoutMs?: number): Promise<number>
  /**
   * A clean restart: PostgreSQL `pg_ctl restart -m fast` (sessions get 57P01 and are cut);
   * MariaDB `SHUTDOWN`, then the same server started again. Resolves once it accepts again.
   */
  restart(options?: { readonly mode?: 'fast' }): Promise<void>
  /** A clean shutdown (as `restart`'s first half). Resolves once the server's processes are gone. */
  stop(): Promise<void>
  /** Starts the stopped (or crashed) server again, same port and data dir; resolves once it accepts. */
  start(): Promise<void>
  /** `kill -9` of the server's main process; resolves once it (and for PostgreSQL its children) is gone. */
  crash(): Promise<void>
  /** Kills whatever runs and deletes the temp dir. Idempotent; afterwards nothing is left. */
  remove(): Promise<void>
}

/** Extra settings: PostgreSQL's `name = value` lines, or mariadbd's `--name=value` options. */
export type ServerSettings = Readonly<Record<string, string | number | boolean>>

const run = promisify(execFile)

/** Runs a program as `user` when this process is root (PostgreSQL refuses to run as root). */
export async function runAs(
  user: string,
  file: string,
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<string> {
  const [cmd, argv] =
    process.getuid?.() === 0 ? ['runuser', ['-u', user, '--', file, ...args]] : [file, [...args]]
  try {
    const { stdout } = await run(cmd, argv, { timeout: timeoutMs, maxBuffer: 8 << 20 })
    return stdout
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string }
    throw new Error(
      `${file} ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`,
    )
  }
}

/** The uid and gid of `user` (who a server's temp dir is handed to when this runs as root). */
export async function userIds(user: string): Promise<[number, number]> {
  const [uid, gid] = await Promise.all([runAs(user, 'id', ['-u']), runAs(user, 'id', ['-g'])])
  return [Number(uid.trim()), Number(gid.trim())]
}

/**
 * Starts a server at a free port: `launch(port)` starts it there. The port may be taken by someone
 * else before the server binds it: when its log (`log`) then says `portTaken`, another port is
 * tried, three in all. Resolves with the port it runs on.
 */
export async function launchOnFreePort(
  log: string,
  portTaken: string,
  launch: (port: number) => Promise<void>,
): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const port = await closedPort()
    try {
      await launch(port)
      return port
    } catch (error) {
      const text = await readFile(log, 'utf8').catch(() => '')
      if (attempt === 3 || !text.includes(portTaken)) throw error
    }
  }
}

/**
 * Runs `setUp` (install, start, create the `test` database) and resolves with `server`; if it
 * fails, removes the server, so that nothing is left behind, and throws with the tail of its log.
 */
export async function setUpOrRemove(
  server: ThrowawayServer,
  name: string,
  log: string,
  setUp: () => Promise<void>,
): Promise<ThrowawayServer> {
  try {
    await setUp()
    return server
  } catch (error) {
    const text = await readFile(log, 'utf8').catch(() => '')
    await server.remove()
    throw new Error(
      `throwaway ${name} in ${server.dir} did not start: ${String(error)}\n${text.slice(-2_000)}`,
    )
  }
}

/** Whether a process with this id exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  // A zombie (dead, not yet reaped by its parent or by init) counts as gone.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat[stat.lastIndexOf(')') + 2] !== 'Z'
  } catch {
    return true
  }
}

/** Whether something accepts connections on 127.0.0.1:`port`. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Resolves once none of `pids` exists; rejects after `timeoutMs`. */
export async function waitForExit(pids: readonly number[], timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (pids.some(alive)) {
    if (performance.now() > deadline) throw new Error(`processes ${pids.join(', ')} still alive`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Polls `attempt` every 10 ms until it resolves; returns `performance.now()` at that moment. */
export async function pollUntil(
  what: string,
  attempt: () => Promise<unknown>,
  timeoutMs: number,
): Promise<number> {
  const deadline = performance.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      await attempt()
      return performance.now()
    } catch (error) {
      last = error
    }
    if (performance.now() > deadline) {
      throw new Error(`${what} did not accept within ${timeoutMs} ms: ${String(last)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/**
 * Starts a watchdog for a server's temp dir: a detached shell that, once this process is gone
 * (a test that failed before its `afterAll`, or a worker killed by the runner, which no 'exit'
 * handler sees), runs `killServer` and deletes the dir. It ends by itself when the dir is deleted
 * (`remove()`). `killServer` is a shell command, run in the dir.
 */
export function watchdog(dir: string, killServer: string): void {
  const script = `while kill -0 ${process.pid} 2>/dev/null && [ -d "$0" ]; do sleep 0.5; done
[ -d "$0" ] || exit 0
cd "$0" && { ${killServer}; } >/dev/null 2>&1
cd / && rm -rf "$0"`
  const child = spawn('sh', ['-c', script, dir], { detached: true, stdio: 'ignore' })
  child.on('error', () => {})
  child.unref()
}
