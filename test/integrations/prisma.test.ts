import { execFile } from 'node:child_process'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { PrismaPg } from '@prisma/adapter-pg'
import { build } from 'esbuild'
import pg from 'pg'
import { afterAll, expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import { Pool } from '../../src/compat/pg.js'
import { type Consumer, consumerSuite, MAX, OVERFLOW } from './consumer-suite.js'
import { unique } from './support.js'

/**
 * Prisma needs a generated client. It is generated per run, offline, into a temp dir under
 * node_modules/.cache (nothing generated is committed), with a table name unique to the run.
 *
 * `prisma generate` runs no engine binary (Prisma 7 generates with WebAssembly and queries through
 * the driver adapter), but the CLI still tries to download the schema engine when it starts:
 *   npx prisma generate --schema <dir>/schema.prisma
 *   Error: request to https://binaries.prisma.sh/all_commits/<hash>/debian-openssl-3.0.x/schema-engine.gz.sha256
 *   failed, reason: getaddrinfo ENOTFOUND binaries.prisma.sh
 * Pointing PRISMA_SCHEMA_ENGINE_BINARY at an existing file skips that download; generate never
 * runs it. The generated client is TypeScript, which Node 20 cannot load from node_modules, so
 * esbuild bundles it to one ESM file, leaving the packages external.
 */
const table = unique('prisma_rows')
const dir = resolve('node_modules/.cache/lifeguard-prisma', unique('gen'))

async function generateClient(): Promise<string> {
  await mkdir(dir, { recursive: true })
  const schema = join(dir, 'schema.prisma')
  await writeFile(
    schema,
    `generator client {
  provider     = "prisma-client"
  output       = "./generated"
  moduleFormat = "esm"
}

datasource db {
  provider = "postgresql"
}

model Row {
  id   Int    @id @default(autoincrement())
  name String @unique @db.VarChar(100)

  @@map("${table}")
}
`,
  )
  await promisify(execFile)(
    process.execPath,
    [resolve('node_modules/prisma/build/index.js'), 'generate', '--schema', schema],
    {
      env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: '/bin/false', CHECKPOINT_DISABLE: '1' },
      timeout: 60_000,
    },
  )
  const outfile = join(dir, 'client.mjs')
  await build({
    entryPoints: [join(dir, 'generated/client.ts')],
    bundle: true,
    format: 'esm',
    platform: 'node',
    packages: 'external',
    outfile,
    logLevel: 'silent',
  })
  return outfile
}

/** The generated client's surface that the test uses. */
interface RowDelegate {
  create(args: { data: { name: string } }): Promise<unknown>
  findMany(args: { orderBy: { id: 'asc' } }): Promise<Array<{ name: string }>>
  updateMany(args: { where: { name: string }; data: { name: string } }): Promise<unknown>
  deleteMany(args: { where: { name: string } }): Promise<unknown>
}
interface PrismaClientLike {
  row: RowDelegate
  $transaction<T>(
    body: (tx: {
      row: RowDelegate
      $queryRawUnsafe: PrismaClientLike['$queryRawUnsafe']
    }) => Promise<T>,
  ): Promise<T>
  $queryRawUnsafe<T = Array<Record<string, unknown>>>(sql: string, ...values: unknown[]): Promise<T>
  $executeRawUnsafe(sql: string): Promise<number>
  $disconnect(): Promise<void>
}
type PrismaClientClass = new (options: { adapter: PrismaPg }) => PrismaClientLike

let PrismaClient: PrismaClientClass | undefined
let failure: string | undefined
try {
  const file = await generateClient()
  PrismaClient = ((await import(pathToFileURL(file).href)) as { PrismaClient: PrismaClientClass })
    .PrismaClient
} catch (error) {
  failure = `${(error as Error).message}\n${(error as { stderr?: string }).stderr ?? ''}`
}

afterAll(() => rm(dir, { recursive: true, force: true }))

if (PrismaClient === undefined) {
  console.warn(`[lifeguard integrations] SKIPPING Prisma: prisma generate failed: ${failure}`)
  it.skip(`Prisma with @prisma/adapter-pg over lifeguard/pg (prisma generate failed: ${failure})`, () => {})
} else {
  const Client = PrismaClient
  const setup = async ({ url }: { url: string }): Promise<Consumer> => {
    const pool = new Pool({
      connectionString: url,
      max: MAX,
      lifeguard: { maxOverflow: OVERFLOW },
    })
    // PrismaPg takes a pool only if it is `instanceof pg.Pool`; anything else is read as config.
    expect(pool).toBeInstanceOf(pg.Pool)
    const adapter = new PrismaPg(pool as unknown as pg.Pool)
    expect((adapter as unknown as { externalPool: unknown }).externalPool).toBe(pool)
    const prisma = new Client({ adapter })
    await prisma.$executeRawUnsafe(
      `CREATE TABLE ${table} (id serial PRIMARY KEY, name varchar(100) NOT NULL UNIQUE)`,
    )
    return {
      subject: {
        insert: (name) => prisma.row.create({ data: { name } }),
        names: async () =>
          (await prisma.row.findMany({ orderBy: { id: 'asc' } })).map((r) => r.name),
        rename: (from, to) => prisma.row.updateMany({ where: { name: from }, data: { name: to } }),
        remove: (name) => prisma.row.deleteMany({ where: { name } }),
        transaction: (body) =>
          prisma.$transaction((tx) =>
            body(
              (name) => tx.row.create({ data: { name } }),
              (text) => tx.$queryRawUnsafe(text),
            ),
          ),
        echo: async (n) =>
          (
            await prisma.$queryRawUnsafe<Array<{ n: number; alone: boolean }>>(
              'SELECT $1::int AS n, txid_current_if_assigned() IS NULL AS alone',
              n,
            )
          )[0]!,
      },
      lifeguard: () => lifeguardOf(pool),
      // @prisma/adapter-pg runs autocommit statements with pool.query(), transactions on connect().
      pipelines: true,
      end: async () => {
        await prisma.$executeRawUnsafe(`DROP TABLE IF EXISTS ${table}`)
        // Without disposeExternalPool, Prisma leaves our pool open: we end it.
        await prisma.$disconnect()
        expect(lifeguardOf(pool).closed).toBe(false)
        await pool.end()
        expect(lifeguardOf(pool).closed).toBe(true)
      },
    }
  }
  await consumerSuite('postgres', 'Prisma with @prisma/adapter-pg over lifeguard/pg', setup)
  await consumerSuite(
    'postgres',
    'Prisma with @prisma/adapter-pg over lifeguard/pg, through PgBouncer in transaction mode',
    setup,
    undefined,
    { through: 'pgbouncer' },
  )
}
