import { inspect } from 'node:util'

/**
 * Secrets shorter than this are not searched for: a two-letter password occurs in every message,
 * and masking it would only garble them. Such a password is no secret anyway.
 */
const MIN_SECRET_LENGTH = 4

/** The properties a driver error carries that are worth keeping on a redacted copy. */
const KEPT = [
  'code',
  'errno',
  'sqlState',
  'sqlMessage',
  'severity',
  'fatal',
  'syscall',
  'address',
  'port',
] as const

/**
 * The secrets a connection string holds: its password, raw and percent-decoded, and a
 * `password` query parameter. A string that `URL` cannot parse is searched by hand, since the
 * driver's error for it (Node's `ERR_INVALID_URL`) carries the whole string.
 */
export function secretsOfUrl(url: string): string[] {
  const found: string[] = []
  const add = (raw: string) => {
    if (raw === '') return
    found.push(raw)
    try {
      found.push(decodeURIComponent(raw))
    } catch {
      // a malformed escape: the raw form is all there is
    }
  }
  let parsed: URL | undefined
  try {
    parsed = new URL(url)
  } catch {
    parsed = undefined
  }
  if (parsed !== undefined) {
    add(parsed.password)
    const param = parsed.searchParams.get('password')
    if (param !== null) found.push(param)
    return found
  }
  // scheme://user:password@host…: the password runs from the first ':' of the authority to its
  // last '@' (which may be past a '/' in an unescaped password, so try both ends).
  const rest = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/(.*)$/s.exec(url)?.[1]
  if (rest === undefined) return found
  const colon = rest.indexOf(':')
  for (const end of [rest.lastIndexOf('@', rest.search(/[/?#]|$/)), rest.lastIndexOf('@')]) {
    if (colon !== -1 && end > colon) add(rest.slice(colon + 1, end))
  }
  return found
}

/**
 * The secrets a driver's connection argument holds, normalized ({@link normalizeSecrets}): a
 * connection string's, or an options object's `keys` and the connection string under `urlKey`.
 */
export function secretsOfConfig(
  config: unknown,
  keys: readonly string[],
  urlKey: string,
): string[] {
  const found: unknown[] = []
  if (typeof config === 'string') found.push(...secretsOfUrl(config))
  else if (typeof config === 'object' && config !== null) {
    const fields = config as Record<string, unknown>
    for (const key of keys) found.push(fields[key])
    const url = fields[urlKey]
    if (typeof url === 'string') found.push(...secretsOfUrl(url))
  }
  return normalizeSecrets(found)
}

/** The distinct secrets worth searching for, longest first, so that no part of one stays behind. */
export function normalizeSecrets(secrets: Iterable<unknown>): string[] {
  const set = new Set<string>()
  for (const secret of secrets) {
    if (typeof secret === 'string' && secret.length >= MIN_SECRET_LENGTH) set.add(secret)
  }
  return [...set].sort((a, b) => b.length - a.length)
}

function mask(text: string, secrets: readonly string[]): string {
  let out = text
  for (const secret of secrets) out = out.split(secret).join('***')
  return out
}

function contains(value: unknown, secrets: readonly string[]): boolean {
  let text: string
  try {
    text = inspect(value, { depth: 8, showHidden: false, breakLength: Number.POSITIVE_INFINITY })
  } catch {
    return true // cannot tell: treat it as tainted
  }
  return secrets.some((secret) => text.includes(secret))
}

/**
 * Returns `error` unchanged when no secret shows in it (its message, stack, properties or
 * causes); otherwise a plain `Error` copy with every secret masked as `***`, keeping the
 * driver's `code`, `errno`, `sqlState` and the like, and a redacted `cause`. Drivers put the
 * connection string in some errors: Node's `ERR_INVALID_URL` carries the whole URL as `input`.
 */
export function redactError(error: unknown, secrets: readonly string[], depth = 0): unknown {
  if (secrets.length === 0 || !contains(error, secrets)) return error
  if (typeof error !== 'object' || error === null) {
    return new Error(mask(String(error), secrets))
  }
  const source = error as Record<string, unknown> & { message?: unknown; stack?: unknown }
  const message = typeof source.message === 'string' ? source.message : String(error)
  const cause = source.cause
  const copy = new Error(
    mask(message, secrets),
    cause !== undefined && depth < 4
      ? { cause: redactError(cause, secrets, depth + 1) }
      : undefined,
  ) as Error & Record<string, unknown>
  if (typeof source.name === 'string') copy.name = mask(source.name, secrets)
  if (typeof source.stack === 'string') copy.stack = mask(source.stack, secrets)
  for (const key of KEPT) {
    const value = source[key]
    if (value === undefined) continue
    copy[key] = typeof value === 'string' ? mask(value, secrets) : value
  }
  return copy
}
