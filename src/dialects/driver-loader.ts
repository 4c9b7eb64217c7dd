import { createRequire } from 'node:module'
import { DriverMissingError } from '../core/errors.js'

/** The code of the error a dialect throws when its driver package is not installed. */
export const DRIVER_MISSING = DriverMissingError.code

/**
 * A `require` that resolves from lifeguard's own location, in both builds: the CJS build knows its
 * `__filename`; the ESM build has `import.meta.url` (which esbuild empties in the CJS build). The
 * bare `require` is avoided on purpose: esbuild turns it into a shim without `resolve` in ESM.
 */
function ownRequire(): NodeJS.Require | undefined {
  try {
    return createRequire(typeof __filename === 'string' ? __filename : import.meta.url)
  } catch {
    return undefined
  }
}

function codeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null
    ? (error as { code?: unknown }).code
    : undefined
}

/**
 * Loads one dialect's driver on first use and caches it, so that importing a dialect (or
 * `createPool`, which refers to all three) never loads a driver the application does not use.
 * It also checks, synchronously, that the driver is installed, so that a missing one is reported
 * when the dialect is created rather than on the first connect.
 */
export class DriverLoader<T> {
  readonly #pkg: string
  readonly #entry: string
  readonly #importer: () => Promise<unknown>
  readonly #pick: (module: unknown) => T
  #loading: Promise<T> | undefined

  /**
   * @param pkg - the npm package, such as `pg`
   * @param entry - the lifeguard entry point that needs it, such as `lifeguard/postgres`, for messages
   * @param importer - `() => import('pg')`, written out so that bundlers can see the import
   * @param pick - takes what the dialect needs from the imported module (ESM or CJS shape);
   *   {@link defaultExport} unless given
   */
  constructor(
    pkg: string,
    entry: string,
    importer: () => Promise<unknown>,
    pick: (module: unknown) => T = defaultExport<T>,
  ) {
    this.#pkg = pkg
    this.#entry = entry
    this.#importer = importer
    this.#pick = pick
  }

  /**
   * Throws `LIFEGUARD_DRIVER_MISSING` when the package cannot be resolved. Only a plain "not found"
   * counts: a package that resolves under `import` but not `require` is let through, and
   * `load()` gives the final answer.
   */
  check(): void {
    const req = ownRequire()
    if (req === undefined) return
    try {
      req.resolve(this.#pkg)
    } catch (error) {
      if (codeOf(error) === 'MODULE_NOT_FOUND') throw this.#missing(error)
    }
  }

  /** Imports the driver once; later calls share the same promise. A failed import is retried. */
  load(): Promise<T> {
    this.#loading ??= this.#importer().then(
      (module) => this.#pick(module),
      (error: unknown) => {
        this.#loading = undefined
        const code = codeOf(error)
        const notFound =
          (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
          String((error as Error).message).includes(`'${this.#pkg}'`)
        throw notFound ? this.#missing(error) : error
      },
    )
    return this.#loading
  }

  #missing(cause: unknown): DriverMissingError {
    return new DriverMissingError(
      `${this.#entry} needs the '${this.#pkg}' package: npm install ${this.#pkg}`,
      { cause },
    )
  }
}

/** The module's `default` export when it has one (CJS seen from ESM), else the module itself. */
export function defaultExport<T>(module: unknown): T {
  const m = module as { default?: unknown }
  return (m.default ?? m) as T
}
