import { type Generated, Kysely, MysqlDialect, PostgresDialect, sql } from 'kysely'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import { createPool } from '../../src/compat/mysql2.js'
import { Pool } from '../../src/compat/pg.js'
import { describeOnServer, probe } from '../support/servers.js'
import { type Consumer, consumerSuite, MAX, OVERFLOW, type Rows } from './consumer-suite.js'
import { MYSQL_URL, PG_URL, peakServerConnections, unique } from './support.js'

interface Database {
  [table: string]: { id: Generated<number>; name: string }
}

for (const kind of ['postgres', 'mysql'] as const) {
  const status = await probe(kind)
  describeOnServer(
    status,
    `Kysely ${kind === 'postgres' ? 'PostgresDialect' : 'MysqlDialect'} over lifeguard`,
    () => {
      const table = unique('ky')
      const tag = unique('kyapp')
      let facade: object
      let db: Kysely<Database>
      beforeAll(async () => {
        if (kind === 'postgres') {
          const pool = new Pool({
            connectionString: PG_URL,
            application_name: tag,
            max: MAX,
            lifeguard: { maxOverflow: OVERFLOW },
          })
          facade = pool
          db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
        } else {
          const pool = createPool({
            uri: MYSQL_URL,
            connectionLimit: MAX,
            lifeguard: { maxOverflow: OVERFLOW },
          })
          facade = pool
          db = new Kysely<Database>({ dialect: new MysqlDialect({ pool }) })
        }
        const id =
          kind === 'postgres' ? sql`serial primary key` : sql`int auto_increment primary key`
        await db.schema
          .createTable(table)
          .addColumn('id', sql`${id}` as never)
          .addColumn('name', 'varchar(100)', (c) => c.notNull().unique())
          .execute()
      })
      afterAll(async () => {
        await db.schema.dropTable(table).ifExists().execute()
        await db.destroy()
        expect(lifeguardOf(facade).closed).toBe(true)
      })

      it('CRUD', async () => {
        await db.insertInto(table).values({ name: 'ada' }).execute()
        expect(
          await db.selectFrom(table).select('name').where('name', '=', 'ada').execute(),
        ).toEqual([{ name: 'ada' }])
        await db.updateTable(table).set({ name: 'grace' }).where('name', '=', 'ada').execute()
        await db.deleteFrom(table).where('name', '=', 'grace').execute()
        expect(await db.selectFrom(table).selectAll().execute()).toEqual([])
      })

      it('commits and rolls back transactions', async () => {
        await db
          .transaction()
          .execute((trx) => trx.insertInto(table).values({ name: 'kept' }).execute())
        await expect(
          db.transaction().execute(async (trx) => {
            await trx.insertInto(table).values({ name: 'dropped' }).execute()
            throw new Error('roll back')
          }),
        ).rejects.toThrow('roll back')
        const names = (await db.selectFrom(table).select('name').execute()).map((r) => r.name)
        expect(names).toContain('kept')
        expect(names).not.toContain('dropped')
      })

      it('an error inside a transaction leaves the connection clean', async () => {
        await expect(
          db.transaction().execute(async (trx) => {
            await trx.insertInto(table).values({ name: 'dup' }).execute()
            await trx.insertInto(table).values({ name: 'dup' }).execute() // unique violation
          }),
        ).rejects.toThrow()
        // Every connection in the pool answers normally, outside any transaction.
        const results = await Promise.all(
          Array.from({ length: MAX }, () =>
            db.selectFrom(table).select('name').where('name', '=', 'dup').execute(),
          ),
        )
        for (const rows of results) expect(rows).toEqual([])
        expect(lifeguardOf(facade).stats().leased).toBe(0)
      })

      it(`200 concurrent operations open at most max + maxOverflow (${MAX + OVERFLOW}) server sessions`, async () => {
        const peak = await peakServerConnections(
          kind,
          { applicationName: tag, pool: lifeguardOf(facade) },
          () =>
            Promise.all(
              Array.from({ length: 200 }, (_, i) =>
                i % 10 === 0
                  ? db.transaction().execute((trx) =>
                      trx
                        .insertInto(table)
                        .values({ name: `n${i}` })
                        .execute(),
                    )
                  : db.selectFrom(table).select('name').limit(1).execute(),
              ),
            ),
        )
        expect(peak).toBeGreaterThan(0)
        expect(peak).toBeLessThanOrEqual(MAX + OVERFLOW)
        expect(lifeguardOf(facade).stats().total).toBeLessThanOrEqual(MAX + OVERFLOW)
      })
    },
  )
}

/** Kysely's PostgresDialect over a `lifeguard/pg` pool at `url`, on the suite's table. */
async function kyselyPg({ url, table }: { url: string; table: string }): Promise<Consumer> {
  const pool = new Pool({ connectionString: url, max: MAX, lifeguard: { maxOverflow: OVERFLOW } })
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  await db.schema
    .createTable(table)
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('name', 'varchar(100)', (c) => c.notNull().unique())
    .execute()
  return {
    subject: {
      insert: (name) => db.insertInto(table).values({ name }).execute(),
      names: async () =>
        (await db.selectFrom(table).select('name').orderBy('id').execute()).map((r) => r.name),
      rename: (from, to) =>
        db.updateTable(table).set({ name: to }).where('name', '=', from).execute(),
      remove: (name) => db.deleteFrom(table).where('name', '=', name).execute(),
      transaction: (body) =>
        db.transaction().execute((trx) =>
          body(
            (name) => trx.insertInto(table).values({ name }).execute(),
            async (text) => (await sql.raw<Rows[number]>(text).execute(trx)).rows,
          ),
        ),
      echo: async (n) =>
        (
          await sql<{
            n: number
            alone: boolean
          }>`SELECT ${n}::int AS n, txid_current_if_assigned() IS NULL AS alone`.execute(db)
        ).rows[0]!,
    },
    lifeguard: () => lifeguardOf(pool),
    // PostgresDialect checks out a client (pool.connect()) for every statement.
    pipelines: false,
    end: () => db.destroy(),
  }
}

await consumerSuite('postgres', 'Kysely PostgresDialect over lifeguard/pg', kyselyPg)

await consumerSuite(
  'postgres',
  'Kysely PostgresDialect over lifeguard/pg, through PgBouncer in transaction mode',
  kyselyPg,
  undefined,
  { through: 'pgbouncer' },
)
