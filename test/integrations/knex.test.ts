import knex, { type Knex } from 'knex'
import { expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import { createPool } from '../../src/compat/mysql2.js'
import { Pool } from '../../src/compat/pg.js'
import { type Consumer, consumerSuite, MAX, OVERFLOW, type Subject } from './consumer-suite.js'

function subjectOf(db: Knex, table: string): Subject {
  return {
    insert: (name) => db(table).insert({ name }),
    names: async () => (await db(table).select('name').orderBy('id')).map((r) => r.name),
    rename: (from, to) => db(table).where({ name: from }).update({ name: to }),
    remove: (name) => db(table).where({ name }).delete(),
    // The raw statement reads PostgreSQL's result shape (`rows`): only the pg consumer calls it.
    transaction: (body) =>
      db.transaction((trx) =>
        body(
          (name) => trx(table).insert({ name }),
          async (text) => (await trx.raw(text)).rows,
        ),
      ),
  }
}

/** `echo` through Knex on PostgreSQL. */
function echoOf(db: Knex): Subject['echo'] {
  return async (n) =>
    (await db.raw('SELECT ?::int AS n, txid_current_if_assigned() IS NULL AS alone', [n])).rows[0]
}

async function createTable(db: Knex, table: string): Promise<void> {
  await db.schema.createTable(table, (t) => {
    t.increments('id')
    t.string('name', 100).notNullable().unique()
  })
}

await consumerSuite(
  'postgres',
  'Knex pg with connectionPool: lifeguard/pg Pool',
  async ({ url, table }): Promise<Consumer> => {
    const pool = new Pool({ connectionString: url, max: MAX, lifeguard: { maxOverflow: OVERFLOW } })
    const db = knex({ client: 'pg', connectionPool: pool })
    await createTable(db, table)
    return {
      subject: { ...subjectOf(db, table), echo: echoOf(db) },
      lifeguard: () => lifeguardOf(pool),
      // Knex wraps a driver's pool in a tarn-like pool of its own: a client per statement (connect()).
      pipelines: false,
      end: async () => {
        await db.destroy()
        // Knex never ends an external pool: the pool still works after knex.destroy().
        expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
        await pool.end()
        expect(lifeguardOf(pool).closed).toBe(true)
      },
    }
  },
)

await consumerSuite(
  'mysql',
  'Knex mysql2 with connectionPool: lifeguard/mysql2 createPool',
  async ({ url, table }): Promise<Consumer> => {
    const pool = createPool({
      uri: url,
      connectionLimit: MAX,
      lifeguard: { maxOverflow: OVERFLOW },
    })
    // Knex's MySQLPoolLike type rejects mysql2's own Pool type (a real mysql2 pool as well):
    // a typing gap, not a runtime one.
    const db = knex({ client: 'mysql2', connectionPool: pool as unknown as Knex.MySQLPoolLike })
    await createTable(db, table)
    return {
      subject: subjectOf(db, table),
      lifeguard: () => lifeguardOf(pool),
      end: async () => {
        await db.destroy()
        await new Promise<void>((resolve, reject) =>
          pool.end((error) => (error ? reject(error) : resolve())),
        )
        expect(lifeguardOf(pool).closed).toBe(true)
      },
    }
  },
  (get) => {
    it('also takes the promise() wrapper, whose .pool Knex unwraps', async () => {
      const { url, table } = get()
      const pool = createPool({
        uri: url,
        connectionLimit: MAX,
        lifeguard: { maxOverflow: OVERFLOW },
      })
      const db = knex({ client: 'mysql2', connectionPool: pool.promise() })
      try {
        await db(table).insert({ name: 'via-promise' })
        expect(await db(table).where({ name: 'via-promise' }).delete()).toBe(1)
        expect(lifeguardOf(pool.promise()).stats().leased).toBe(0)
      } finally {
        await db.destroy()
        await pool.promise().end()
      }
    })
  },
)
