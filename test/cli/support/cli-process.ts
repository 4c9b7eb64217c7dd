import { spawn } from 'node:child_process'
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

/** What one run of the CLI printed, and how it exited. */
export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

/**
 * Bundles src/cli/main.ts into one ESM file under node_modules/.cache, so that the tests run the
 * current sources as a real process (a real bin: argv, exit codes, signals, stdout) without
 * depending on an earlier `npm run build`. Packages stay external and resolve from the repo.
 */
export async function bundleCli(tag = 'cli'): Promise<string> {
  const dir = join(ROOT, 'node_modules', '.cache', 'lifeguard-cli-test')
  mkdirSync(dir, { recursive: true })
  // One file per test file (`tag`) and process: test files may share a process and run at once.
  const outfile = join(dir, `${tag}-${process.pid}.mjs`)
  await build({
    entryPoints: [join(ROOT, 'src', 'cli', 'main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'warning',
  })
  return outfile
}

/** Runs the bundled CLI with `args`; kills it (and fails the run) after `timeoutMs`. */
export function runCli(cli: string, args: string[], timeoutMs = 60_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], {
      cwd: ROOT,
      env: { ...process.env, NODE_DEBUG: '', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    const timer = setTimeout(() => {
      child.kill('SIGINT')
      setTimeout(() => child.kill('SIGKILL'), 5_000).unref()
      reject(new Error(`lifeguard ${args.join(' ')} ran longer than ${timeoutMs} ms\n${stderr}`))
    }, timeoutMs)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/**
 * Copies the bundled CLI into a fresh directory whose node_modules holds only `packages`
 * (links to the repository's copies), as in a project that installed just those: every other
 * package fails to resolve from the CLI, as it would for a user. Returns the copy's path.
 */
export function isolatedCli(cli: string, dir: string, packages: readonly string[]): string {
  const modules = join(dir, 'node_modules')
  mkdirSync(modules, { recursive: true })
  for (const pkg of packages) symlinkSync(join(ROOT, 'node_modules', pkg), join(modules, pkg))
  const copy = join(dir, 'cli.mjs')
  copyFileSync(cli, copy)
  return copy
}

/**
 * Lays the bundled CLI out as the published package does (`package.json`, `dist/cli.js`, and
 * `docs/errors.md` from this repository), so that the CLI finds its docs the way it does in
 * node_modules/lifeguard. `withDocs: false` leaves docs/ out, as a broken install would.
 * Returns the path of the copy's `dist/cli.js`.
 */
export function packagedCli(cli: string, dir: string, withDocs = true): string {
  mkdirSync(join(dir, 'dist'), { recursive: true })
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'lifeguard', version: '0.0.0-test', type: 'module' }),
  )
  const copy = join(dir, 'dist', 'cli.js')
  copyFileSync(cli, copy)
  if (withDocs) {
    mkdirSync(join(dir, 'docs'), { recursive: true })
    copyFileSync(join(ROOT, 'docs', 'errors.md'), join(dir, 'docs', 'errors.md'))
  }
  return copy
}
