import { defineConfig } from 'tsup'

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    postgres: 'src/dialects/postgres.ts',
    mysql: 'src/dialects/mysql.ts',
    sqlite: 'src/dialects/sqlite.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  splitting: true,
  treeshake: true,
  // Drivers are optional peer dependencies: never bundle them.
  external: ['pg', 'mysql2', 'better-sqlite3'],
})
