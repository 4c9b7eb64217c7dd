import { spawn } from 'node:child_process'
import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { build } from 'esbuild'

/**
 * Bundles the core into one ESM file in a temp folder, so a child `node` process can import it
 * without a build step: tests that need a fresh process (exit, NODE_DEBUG) use it.
 */
export async function bundleCore(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'lifeguard-core-'))
  const file = join(dir, 'lifeguard.mjs')
  await bundleFile(join(import.meta.dirname, '../../src/index.ts'), file)
  return file
}

/**
 * Bundles `entry` (a path) into the ESM file `file` for a child `node` process; with `external`,
 * the packages it imports stay imports, for the `node_modules` of the folder it runs in.
 */
export async function bundleFile(entry: string, file: string, external = false): Promise<void> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    ...(external ? { packages: 'external' as const } : {}),
    write: false,
  })
  writeFileSync(file, result.outputFiles[0]!.text)
}

/** A dialect that opens in-memory "connections", for child-process scripts. */
export const inlineDialect = `{
  name: 'inline',
  async connect() { return { id: Math.random() } },
  async close() {},
  async ping() {},
}`

/** The drop-in facades a child-process twin can load, by the driver they stand in for. */
const FACADES = {
  pg: { entry: '../../src/compat/pg.ts', file: 'lifeguard-pg.mjs' },
  mysql2: { entry: '../../src/compat/mysql2.ts', file: 'lifeguard-mysql2.mjs' },
} as const

/**
 * Bundles a facade into one ESM file (`lifeguard-pg.mjs`, `lifeguard-mysql2.mjs`) in a temp
 * folder whose `node_modules` is the one holding the real driver, so that a child process run in
 * that folder loads the driver and the facade alike without a build step. Returns the folder.
 */
export async function bundleFacade(driver: keyof typeof FACADES): Promise<string> {
  const { entry, file } = FACADES[driver]
  const modules = dirname(dirname(createRequire(import.meta.url).resolve(`${driver}/package.json`)))
  const dir = mkdtempSync(join(tmpdir(), `lifeguard-${driver}-facade-`))
  symlinkSync(modules, join(dir, 'node_modules'))
  await bundleFile(join(import.meta.dirname, entry), join(dir, file), true)
  return dir
}

/** What a child-process script left behind. */
export interface ScriptEnd {
  /** The lines it printed on stdout. */
  lines: string[]
  /** Its exit code (`null` when killed). */
  code: number | null
}

/** Runs `script` as an ESM module in a fresh `node` in `cwd`; it is killed after `killAfter` ms. */
export function runModuleScript(
  cwd: string,
  script: string,
  killAfter = 15_000,
): Promise<ScriptEnd> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    const killer = setTimeout(() => child.kill('SIGKILL'), killAfter)
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
    })
    child.stderr.resume()
    child.on('error', reject)
    child.on('exit', (code) => {
      clearTimeout(killer)
      resolve({ lines: stdout.trim().split('\n'), code })
    })
  })
}
