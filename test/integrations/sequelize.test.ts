import { DataTypes, type Model, type ModelStatic, QueryTypes, Sequelize } from 'sequelize'
import { expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import { managedPoolCount } from '../../src/compat/manage.js'
import { configureMysql2 } from '../../src/compat/mysql2.js'
import { configurePg } from '../../src/compat/pg.js'
import type { Pool as LifeguardPool } from '../../src/index.js'
import { type Consumer, consumerSuite, MAX, OVERFLOW } from './consumer-suite.js'

/**
 * Sequelize keeps its own pool (sequelize-pool) of single connections, made with the module's
 * `Client` / `createConnection`. With our module each of those borrows one lifeguard connection on
 * connect and gives it back on end, so Sequelize's pool sits on top of ours: its idle
 * connections stay borrowed. The server sees at most min(Sequelize's max, max + maxOverflow)
 * sessions; Sequelize's max is set to max + maxOverflow here, so its pool never waits on ours.
 */
const SEQUELIZE_MAX = MAX + OVERFLOW

interface ConnectionManager {
  pool: { size: number; available: number; using: number }
  getConnection(): Promise<object>
  releaseConnection(connection: object): Promise<void>
}

function manager(sequelize: Sequelize): ConnectionManager {
  return (sequelize as unknown as { connectionManager: ConnectionManager }).connectionManager
}

/** The lifeguard pool under Sequelize's connections: borrow one of them and ask it. */
async function lifeguardUnder(sequelize: Sequelize): Promise<LifeguardPool<unknown>> {
  const cm = manager(sequelize)
  const connection = await cm.getConnection()
  try {
    return lifeguardOf(connection)
  } finally {
    await cm.releaseConnection(connection)
  }
}

let sequelize: Sequelize

for (const kind of ['postgres', 'mysql'] as const) {
  await consumerSuite(
    kind,
    `Sequelize ${kind} with dialectModule: lifeguard/${kind === 'postgres' ? 'pg' : 'mysql2'}`,
    async ({ url, table, tag }): Promise<Consumer> => {
      const module =
        kind === 'postgres'
          ? configurePg({ max: MAX, maxOverflow: OVERFLOW })
          : configureMysql2({ max: MAX, maxOverflow: OVERFLOW })
      sequelize = new Sequelize(url, {
        dialect: kind,
        dialectModule: module,
        // Sequelize does not read application_name from the URL: pass it to the pg Client.
        dialectOptions: kind === 'postgres' ? { application_name: tag } : {},
        logging: false,
        pool: { max: SEQUELIZE_MAX, min: 0, acquire: 10_000 },
      })
      const Row: ModelStatic<Model<{ id: number; name: string }, { name: string }>> =
        sequelize.define(
          'Row',
          {
            id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
            name: { type: DataTypes.STRING(100), allowNull: false, unique: true },
          },
          { tableName: table, timestamps: false },
        )
      await Row.sync()
      const pool = await lifeguardUnder(sequelize)
      return {
        subject: {
          insert: (name) => Row.create({ name }),
          names: async () =>
            (await Row.findAll({ order: [['id', 'ASC']] })).map((r) => r.get('name') as string),
          rename: (from, to) => Row.update({ name: to }, { where: { name: from } }),
          remove: (name) => Row.destroy({ where: { name } }),
          transaction: (body) =>
            sequelize.transaction(async (transaction) => {
              await body(
                (name) => Row.create({ name }, { transaction }),
                (text) => sequelize.query(text, { transaction, type: QueryTypes.SELECT }),
              )
            }),
          echo: async (n) =>
            (
              await sequelize.query<{ n: number; alone: boolean }>(
                'SELECT $1::int AS n, txid_current_if_assigned() IS NULL AS alone',
                { bind: [n], type: QueryTypes.SELECT },
              )
            )[0]!,
        },
        // Sequelize's connections are Clients, each holding a lease of its own: nothing shares.
        pipelines: false,
        lifeguard: () => pool,
        // Sequelize's idle connections each keep their borrow.
        idleLeases: () => manager(sequelize).pool.size,
        end: async () => {
          await sequelize.close()
          await module.end()
          expect(pool.closed).toBe(true)
        },
      }
    },
    (get) => {
      it('all of Sequelize’s connections borrow from one lifeguard pool, each holding one lease', async () => {
        const pool = get().lifeguard()!
        const cm = manager(sequelize)
        const before = managedPoolCount()
        const connections = await Promise.all(
          Array.from({ length: SEQUELIZE_MAX }, () => cm.getConnection()),
        )
        try {
          for (const connection of connections) expect(lifeguardOf(connection)).toBe(pool)
          expect(new Set(connections).size).toBe(SEQUELIZE_MAX)
          expect(pool.stats().leased).toBe(SEQUELIZE_MAX)
          expect(pool.stats().total).toBeLessThanOrEqual(MAX + OVERFLOW)
          expect(await get().monitor.sessions()).toBe(SEQUELIZE_MAX)
          expect(managedPoolCount()).toBe(before)
        } finally {
          await Promise.all(connections.map((c) => cm.releaseConnection(c)))
        }
      })
    },
  )
}
