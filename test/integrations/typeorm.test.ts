import 'reflect-metadata'
import { DataSource, EntitySchema } from 'typeorm'
import { expect } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import mysqlCompat from '../../src/compat/mysql2.js'
import pgCompat from '../../src/compat/pg.js'
import { type Consumer, consumerSuite, MAX, OVERFLOW } from './consumer-suite.js'

interface Row {
  id: number
  name: string
}

/** An entity without decorators, so the test needs no decorator compiler settings. */
function entity(table: string): EntitySchema<Row> {
  return new EntitySchema<Row>({
    name: `Row_${table}`,
    tableName: table,
    columns: {
      id: { type: Number, primary: true, generated: true },
      name: { type: 'varchar', length: 100, unique: true },
    },
  })
}

/** The pool TypeORM made with our module: `driver.master` for postgres, `driver.pool` for mysql. */
function facadeOf(ds: DataSource): object {
  const driver = ds.driver as unknown as { master?: object; pool?: object }
  return (driver.master ?? driver.pool)!
}

for (const kind of ['postgres', 'mysql'] as const) {
  await consumerSuite(
    kind,
    `TypeORM ${kind} with driver: lifeguard/${kind === 'postgres' ? 'pg' : 'mysql2'}`,
    async ({ url, table }): Promise<Consumer> => {
      const Entity = entity(table)
      const ds = new DataSource({
        type: kind,
        url,
        driver: kind === 'postgres' ? pgCompat : mysqlCompat,
        poolSize: MAX,
        // The lifeguard options ride along in the driver's pool config.
        extra: { lifeguard: { maxOverflow: OVERFLOW } },
        entities: [Entity],
        synchronize: true,
      })
      await ds.initialize()
      const facade = facadeOf(ds)
      const repo = ds.getRepository(Entity)
      return {
        subject: {
          insert: (name) => repo.insert({ name }),
          names: async () => (await repo.find({ order: { id: 'ASC' } })).map((r) => r.name),
          rename: (from, to) => repo.update({ name: from }, { name: to }),
          remove: (name) => repo.delete({ name }),
          transaction: (body) =>
            ds.transaction((manager) =>
              body(
                (name) => manager.insert(Entity, { name }),
                (text) => manager.query(text),
              ),
            ),
          echo: async (n) =>
            (
              await ds.query('SELECT $1::int AS n, txid_current_if_assigned() IS NULL AS alone', [
                n,
              ])
            )[0],
        },
        lifeguard: () => lifeguardOf(facade),
        // TypeORM's query runner checks out a client (pool.connect()) for every statement.
        pipelines: false,
        end: async () => {
          await ds.destroy()
          expect(lifeguardOf(facade).closed).toBe(true)
        },
      }
    },
  )
}
