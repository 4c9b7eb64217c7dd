import { eq, sql } from 'drizzle-orm'
import { int, mysqlTable, varchar } from 'drizzle-orm/mysql-core'
import { type AnyMySql2Connection, drizzle as drizzleMysql } from 'drizzle-orm/mysql2'
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres'
import { pgTable, varchar as pgVarchar, serial } from 'drizzle-orm/pg-core'
import pg from 'pg'
import { expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import { createPool } from '../../src/compat/mysql2.js'
import { createPool as createPromisePool } from '../../src/compat/mysql2-promise.js'
import { Pool } from '../../src/compat/pg.js'
import {
  type Consumer,
  consumerSuite,
  MAX,
  OVERFLOW,
  type Rows,
  type Subject,
} from './consumer-suite.js'

/** The suite's extra test: `db.transaction` borrows one connection and gives it back after. */
function transactionTakesThePoolPath(lent: string): (get: () => Consumer) => void {
  return (get) => {
    it(`db.transaction takes the pool path: ${lent}, released after`, async () => {
      const { subject, lifeguard } = get()
      const pool = lifeguard()!
      let leasedInside = -1
      await subject.transaction(async (insert) => {
        await insert('inside')
        leasedInside = pool.stats().leased
      })
      expect(leasedInside).toBe(1)
      expect(pool.stats().leased).toBe(0)
      await subject.remove('inside')
    })
  }
}

/**
 * The suite's table through Drizzle's mysql2 driver over `client`, a mysql2 pool or a
 * mysql2/promise pool (Drizzle takes either): created, and the operations the suite runs on it.
 */
async function drizzleMysqlSubject(client: AnyMySql2Connection, table: string): Promise<Subject> {
  const t = mysqlTable(table, {
    id: int('id').primaryKey().autoincrement(),
    name: varchar('name', { length: 100 }).notNull().unique(),
  })
  const db = drizzleMysql({ client })
  await db.execute(
    sql.raw(
      `CREATE TABLE ${table} (id int AUTO_INCREMENT PRIMARY KEY, name varchar(100) NOT NULL UNIQUE) ENGINE=InnoDB`,
    ),
  )
  return {
    insert: (name) => db.insert(t).values({ name }),
    names: async () => (await db.select({ name: t.name }).from(t)).map((r) => r.name),
    rename: (from, to) => db.update(t).set({ name: to }).where(eq(t.name, from)),
    remove: (name) => db.delete(t).where(eq(t.name, name)),
    transaction: (body) => db.transaction((tx) => body((name) => tx.insert(t).values({ name }))),
  }
}

await consumerSuite(
  'postgres',
  'Drizzle node-postgres over lifeguard/pg',
  async ({ url, table }) => {
    const pool = new Pool({ connectionString: url, max: MAX, lifeguard: { maxOverflow: OVERFLOW } })
    const t = pgTable(table, {
      id: serial('id').primaryKey(),
      name: pgVarchar('name', { length: 100 }).notNull().unique(),
    })
    const db = drizzlePg({ client: pool })
    await db.execute(
      sql.raw(`CREATE TABLE ${table} (id serial PRIMARY KEY, name varchar(100) NOT NULL UNIQUE)`),
    )
    return {
      subject: {
        insert: (name) => db.insert(t).values({ name }),
        names: async () => (await db.select({ name: t.name }).from(t)).map((r) => r.name),
        rename: (from, to) => db.update(t).set({ name: to }).where(eq(t.name, from)),
        remove: (name) => db.delete(t).where(eq(t.name, name)),
        transaction: (body) =>
          db.transaction((tx) =>
            body(
              (name) => tx.insert(t).values({ name }),
              async (text) => (await tx.execute(sql.raw(text))).rows as Rows,
            ),
          ),
        echo: async (n) =>
          (
            await db.execute<{ n: number; alone: boolean }>(
              sql`SELECT ${n}::int AS n, txid_current_if_assigned() IS NULL AS alone`,
            )
          ).rows[0]!,
      },
      lifeguard: () => lifeguardOf(pool),
      // Drizzle's node-postgres driver runs its statements with pool.query().
      pipelines: true,
      end: async () => {
        await pool.end()
        expect(lifeguardOf(pool).closed).toBe(true)
      },
    }
  },
  // Drizzle checks `instanceof pg.Pool` or a constructor name containing "Pool"; with neither it
  // would run BEGIN on the pool itself, each statement on a different connection.
  transactionTakesThePoolPath('one lent client'),
)

it('lifeguard/pg Pool passes both of Drizzle’s pool checks', () => {
  const pool = new Pool({ connectionString: 'postgres://127.0.0.1/none' })
  expect(pool).toBeInstanceOf(pg.Pool)
  expect(Object.getPrototypeOf(pool).constructor.name).toContain('Pool')
  return pool.end()
})

await consumerSuite(
  'mysql',
  'Drizzle mysql2 over lifeguard/mysql2',
  async ({ url, table }) => {
    const pool = createPool({
      uri: url,
      connectionLimit: MAX,
      lifeguard: { maxOverflow: OVERFLOW },
    })
    return {
      // Drizzle calls pool.promise() and then uses getConnection() for transactions.
      subject: await drizzleMysqlSubject(pool, table),
      lifeguard: () => lifeguardOf(pool),
      end: async () => {
        await new Promise<void>((resolve, reject) =>
          pool.end((error) => (error ? reject(error) : resolve())),
        )
        expect(lifeguardOf(pool).closed).toBe(true)
      },
    }
  },
  transactionTakesThePoolPath('one lent connection'),
)

await consumerSuite(
  'mysql',
  'Drizzle mysql2 over lifeguard/mysql2/promise',
  async ({ url, table }) => {
    // What a mysql2/promise user has: a promise pool, which Drizzle takes as it is.
    const pool = createPromisePool({
      uri: url,
      connectionLimit: MAX,
      lifeguard: { maxOverflow: OVERFLOW },
    })
    return {
      subject: await drizzleMysqlSubject(pool, table),
      lifeguard: () => lifeguardOf(pool),
      end: async () => {
        await pool.end()
        expect(lifeguardOf(pool).closed).toBe(true)
      },
    }
  },
  transactionTakesThePoolPath('one PromisePoolConnection lent'),
)
