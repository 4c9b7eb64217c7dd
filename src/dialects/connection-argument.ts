import { InvalidOptionError } from '../core/errors.js'
import { describe } from '../core/pool-options.js'

/** What a dialect factory accepts as its connection argument. */
export interface ConnectionArgument {
  /** The factory, for messages: `postgres`. */
  readonly factory: string
  /** The URL schemes the driver speaks, lower case, without the colon. */
  readonly schemes: readonly string[]
  /** The key of the options object that may hold a URL too (`connectionString`, `uri`). */
  readonly urlKey: string
  /** What the options object is, for messages: `a pg ClientConfig object`. */
  readonly object: string
  /** The strings it takes, for messages: `a mysql:// or mariadb:// URL`. */
  readonly strings: string
  /** A string that is no URL but that the driver takes anyway (pg: a socket directory). */
  readonly plain?: ((value: string) => boolean) | undefined
}

/** The scheme of a URL, lower case, or `undefined` when the string does not start with one. */
function schemeOf(url: string): string | undefined {
  return /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase()
}

/**
 * Checks a URL given to a dialect factory, naming only its scheme: the rest may hold a password.
 * Returns what is wrong with it, or `undefined` when the driver speaks it.
 */
function urlProblem(url: string, rule: ConnectionArgument): string | undefined {
  if (rule.plain?.(url) === true) return undefined
  const scheme = schemeOf(url)
  if (scheme === undefined) {
    return url === '' ? 'an empty string' : 'a string that does not start with a URL scheme'
  }
  if (rule.schemes.includes(scheme)) return undefined
  return `a "${scheme}:" URL`
}

/**
 * Checks a dialect factory's connection argument at the call: `undefined`, a URL whose scheme
 * the driver speaks, or an options object whose URL key, if set, is such a URL. A mistake there
 * (`postgres(42)`, `postgres('mysql://…')`) would otherwise surface only when the first connect
 * fails, as a protocol error after the acquire timeout. Throws `InvalidOptionError`, which never
 * shows the URL: only its scheme.
 */
export function checkConnectionArgument(value: unknown, rule: ConnectionArgument): void {
  if (value === undefined) return
  const allowed = `${rule.strings}, ${rule.object}, or undefined`
  if (typeof value === 'string') {
    const problem = urlProblem(value, rule)
    if (problem === undefined) return
    throw new InvalidOptionError(
      'config',
      `Invalid argument config of ${rule.factory}(): ${problem}; expected ${allowed}`,
    )
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError(
      'config',
      `Invalid argument config of ${rule.factory}(): ${describe(value)}; expected ${allowed}`,
    )
  }
  const url = (value as Record<string, unknown>)[rule.urlKey]
  if (url === undefined || url === null) return
  const problem = typeof url === 'string' ? urlProblem(url, rule) : describe(url)
  if (problem === undefined) return
  throw new InvalidOptionError(
    rule.urlKey,
    `Invalid option ${rule.urlKey} of ${rule.factory}(): ${problem}; expected ${rule.strings}`,
  )
}
