import mysql2 from 'mysql2'
import pg from 'pg'
import type { Pool } from '../../src/index.js'

export const PG_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const MYSQL_URL = process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test'

let counter = 0
/** A name unique to this run, for tables and application_name tags. */
export function unique(prefix: string): string {
  return `${prefix}_${process.pid.toString(36)}_${Date.now().toString(36)}_${++counter}`
}

/** Calls `sample` every 5 ms while `work` runs, and returns the highest value it returned. */
export async function peakWhile(
  sample: () => Promise<number>,
  work: () => Promise<unknown>,
): Promise<number> {
  let peak = 0
  let running = true
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, await sample())
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })()
  try {
    await work()
  } finally {
    running = false
    await sampler
  }
  return peak
}

/**
 * Samples, every 5 ms while `work` runs, how many server sessions carry our tag, and returns the
 * highest count the server itself reported. Counts only our own sessions: by application_name on
 * PostgreSQL, by the thread ids the pool opened on MariaDB.
 */
export async function peakServerConnections(
  kind: 'postgres' | 'mysql',
  tag: { applicationName?: string; pool?: Pool<unknown> },
  work: () => Promise<unknown>,
): Promise<number> {
  const threadIds = new Set<number>()
  const onConnect = (event: { connection: unknown }) => {
    const id = (event.connection as { threadId?: number }).threadId
    if (typeof id === 'number') threadIds.add(id)
  }
  tag.pool?.on('connect', onConnect)
  let sample: () => Promise<number>
  let close: () => Promise<void>
  if (kind === 'postgres') {
    const monitor = new pg.Client(PG_URL)
    await monitor.connect()
    sample = async () =>
      Number(
        (
          await monitor.query(
            'SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1',
            [tag.applicationName],
          )
        ).rows[0].n,
      )
    close = () => monitor.end()
  } else {
    const monitor = mysql2.createConnection(MYSQL_URL).promise()
    sample = async () => {
      if (threadIds.size === 0) return 0
      const [rows] = await monitor.query(
        'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID IN (?)',
        [[...threadIds]],
      )
      return Number((rows as Array<{ n: number }>)[0]!.n)
    }
    close = () => monitor.end()
  }
  try {
    return await peakWhile(sample, work)
  } finally {
    tag.pool?.off('connect', onConnect)
    await close()
  }
}
