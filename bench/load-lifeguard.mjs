import { mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const root = join(import.meta.dirname, '..')

/**
 * The parts of lifeguard the benchmarks use.
 * @typedef {{
 *   createPool: (options: object) => any,
 *   postgres: (config?: unknown) => any,
 *   mysql: (config?: unknown) => any,
 *   pgFacade: () => Promise<any>,
 *   from: string,
 *   cleanup: () => void,
 * }} Lifeguard
 */

/**
 * Loads lifeguard: the built `dist/` (what users get), or, with `fromSource`, the sources bundled
 * by esbuild into `node_modules/.cache` (so a smoke test needs no `npm run build`, and a stale
 * `dist/` is never measured by mistake). The bundle lives inside the repository so that its
 * `import('pg')` resolves from this `node_modules`; it is removed by `cleanup()` unless `keep`.
 * @param {{ fromSource: boolean, keep?: boolean }} options
 * @returns {Promise<Lifeguard>}
 */
export async function loadLifeguard({ fromSource, keep = false }) {
  if (!fromSource) {
    const dist = join(root, 'dist')
    const load = (/** @type {string} */ name) =>
      import(pathToFileURL(join(dist, name)).href).catch((error) => {
        throw new Error(
          `cannot load ${join('dist', name)} (${error.message}): run \`npm run build\` first, or pass --src`,
        )
      })
    const [core, pg, my] = await Promise.all([
      load('index.js'),
      load('postgres.js'),
      load('mysql.js'),
    ])
    return {
      createPool: core.createPool,
      postgres: pg.postgres,
      mysql: my.mysql,
      pgFacade: () => load('pg.js'),
      from: 'dist',
      cleanup() {},
    }
  }
  const { build } = await import('esbuild')
  const outdir = join(root, 'node_modules', '.cache', 'lifeguard-bench', `src-${process.pid}`)
  mkdirSync(outdir, { recursive: true })
  await build({
    entryPoints: {
      index: join(root, 'src/index.ts'),
      postgres: join(root, 'src/dialects/postgres.ts'),
      mysql: join(root, 'src/dialects/mysql.ts'),
      // lifeguard/pg, loaded only by the benchmarks that ask for it (pgFacade()).
      pg: join(root, 'src/compat/pg.ts'),
    },
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: true,
    // The same as tsup.config.ts: drivers are peer dependencies, never bundled.
    external: ['pg', 'mysql2', 'better-sqlite3'],
    logLevel: 'error',
  })
  const url = (/** @type {string} */ name) => pathToFileURL(join(outdir, name)).href
  const [core, pg, my] = await Promise.all([
    import(url('index.js')),
    import(url('postgres.js')),
    import(url('mysql.js')),
  ])
  return {
    createPool: core.createPool,
    postgres: pg.postgres,
    mysql: my.mysql,
    pgFacade: () => import(url('pg.js')),
    from: 'src (esbuild bundle)',
    cleanup() {
      if (!keep) rmSync(outdir, { recursive: true, force: true })
    },
  }
}
