import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { defineConfig } from 'vitest/config'

/**
 * LIFEGUARD_DRIVERS points the tests at other versions of the driver peers (.ci/driver-versions.sh
 * tests the oldest that package.json's peer ranges allow): a list of `name=dir` pairs, each dir a
 * node_modules holding that driver. Imports of `pg`, `mysql2`, `mysql2/promise`, `better-sqlite3`
 * from src/ and test/ then load that copy; NODE_PATH would not reach ESM imports.
 */
function driverAliases(): Record<string, string> {
  const spec = process.env.LIFEGUARD_DRIVERS
  if (spec === undefined || spec === '') return {}
  const aliases: Record<string, string> = {}
  for (const pair of spec.split(',')) {
    const [name, dir] = pair.split('=')
    if (name === undefined || dir === undefined)
      throw new Error(`LIFEGUARD_DRIVERS: bad entry ${pair}`)
    const target = join(dir, name)
    if (!existsSync(join(target, 'package.json'))) {
      throw new Error(`LIFEGUARD_DRIVERS: no ${name} in ${dir}`)
    }
    aliases[name] = target
  }
  return aliases
}

export default defineConfig({
  resolve: { alias: driverAliases() },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
})
