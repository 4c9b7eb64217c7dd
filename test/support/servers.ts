import mysql2 from 'mysql2'
import pg from 'pg'
import { describe, it } from 'vitest'

/** The database servers the conformance suite runs against. */
export type ServerKind = 'postgres' | 'mysql'

/** Whether this is a CI run, where an unreachable server fails the suite instead of skipping it. */
export const IN_CI = process.env.CI === 'true' || process.env.CI === '1'

/** How long a probe waits for a server before calling it unreachable. */
const PROBE_TIMEOUT_MS = 3_000

const SERVERS = {
  postgres: {
    label: 'PostgreSQL',
    env: 'POSTGRES_URL',
    url: process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    howToStart:
      'sudo pg_ctlcluster 15 main start (or: docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test postgres), then: createdb -h 127.0.0.1 -U postgres test',
  },
  mysql: {
    label: 'MariaDB/MySQL',
    env: 'MYSQL_URL',
    url: process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test',
    howToStart:
      'sudo service mariadb start (or: docker run -p 3306:3306 -e MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1 -e MARIADB_DATABASE=test mariadb)',
  },
} as const

/** What a probe found out about one server. */
export interface ServerStatus {
  readonly kind: ServerKind
  readonly label: string
  /** The server's URL, from the environment or the default. */
  readonly url: string
  readonly up: boolean
  /** Why it is not up. */
  readonly reason?: string | undefined
}

/** The URL with its password masked, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(unparsable URL)'
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

async function probePostgres(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS })
  client.on('error', () => {})
  try {
    await withTimeout(client.connect(), PROBE_TIMEOUT_MS)
    await withTimeout(client.query('SELECT 1'), PROBE_TIMEOUT_MS)
  } finally {
    await client.end().catch(() => {})
  }
}

async function probeMysql(url: string): Promise<void> {
  const connection = mysql2.createConnection(url)
  connection.on('error', () => {})
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) =>
        connection.query('SELECT 1', (error) => (error ? reject(error) : resolve())),
      ),
      PROBE_TIMEOUT_MS,
    )
  } finally {
    connection.destroy()
  }
}

/** Connects to a server with its real driver and runs `SELECT 1`; never throws. */
export async function probe(kind: ServerKind): Promise<ServerStatus> {
  const server = SERVERS[kind]
  try {
    await (kind === 'postgres' ? probePostgres(server.url) : probeMysql(server.url))
    return { kind, label: server.label, url: server.url, up: true }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    return { kind, label: server.label, url: server.url, up: false, reason }
  }
}

/**
 * Registers `body` as a describe block when the server is up. When it is not: in CI a failing
 * test says so; elsewhere a `console.warn` line says which server was unreachable and how to
 * start it, and the block is skipped.
 */
export function describeOnServer(status: ServerStatus, name: string, body: () => void): void {
  if (status.up) {
    describe(name, body)
    return
  }
  const server = SERVERS[status.kind]
  const message = `${status.label} at ${redactUrl(status.url)} is unreachable (${status.reason}). Start it: ${server.howToStart}; or point ${server.env} at one.`
  if (IN_CI) {
    describe(name, () => {
      it(`needs ${status.label}`, () => {
        throw new Error(`CI=true and ${message}`)
      })
    })
    return
  }
  console.warn(`[lifeguard conformance] SKIPPING "${name}": ${message}`)
  describe.skip(name, body)
}
