import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { build } from 'esbuild'

/**
 * Bundles the core into one ESM file in a temp folder, so a child `node` process can import it
 * without a build step: tests that need a fresh process (exit, NODE_DEBUG) use it.
 */
export async function bundleCore(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'lifeguard-core-'))
  const file = join(dir, 'lifeguard.mjs')
  const result = await build({
    entryPoints: [join(import.meta.dirname, '../../src/index.ts')],
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    write: false,
  })
  writeFileSync(file, result.outputFiles[0]!.text)
  return file
}

/** A dialect that opens in-memory "connections", for child-process scripts. */
export const inlineDialect = `{
  name: 'inline',
  async connect() { return { id: Math.random() } },
  async close() {},
  async ping() {},
}`
