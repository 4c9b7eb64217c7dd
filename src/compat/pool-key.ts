import { createHmac, randomBytes } from 'node:crypto'

/**
 * Option names whose values are credentials: they enter a pool key only as a keyed hash, so that
 * the key (which may show up in a heap dump or a debugger) never holds a password.
 */
const SECRET_KEYS = new Set([
  'password',
  'password1',
  'password2',
  'password3',
  'passwordSha1',
  'passphrase',
  'key',
  'pfx',
])

/** Option names whose string values may be URLs with a password in them. */
const URL_KEYS = new Set(['connectionString', 'uri', 'url'])

/** A per-process salt: the hashes cannot be compared across processes or brute-forced from a dump. */
const SALT = randomBytes(32)

/** Functions and class instances are compared by identity: each gets a number on first sight. */
const identities = new WeakMap<object, number>()
let nextIdentity = 0

function identity(value: object): number {
  let id = identities.get(value)
  if (id === undefined) {
    id = ++nextIdentity
    identities.set(value, id)
  }
  return id
}

function hash(value: string | Uint8Array): string {
  return `hmac:${createHmac('sha256', SALT).update(value).digest('base64url')}`
}

/** A URL with its password replaced by a hash; any other string unchanged. */
function hideUrlPassword(value: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return value
  try {
    const url = new URL(value)
    if (url.password === '') return value
    url.password = hash(decodeURIComponent(url.password))
    return url.toString()
  } catch {
    // Not parseable: hash it whole rather than risk keeping a password in the key.
    return hash(value)
  }
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function canonical(value: unknown, name: string, seen: Set<object>): unknown {
  if (value === undefined) return undefined
  if (value === null || typeof value === 'boolean') return value
  if (typeof value === 'number') return Number.isFinite(value) ? value : `number:${value}`
  if (typeof value === 'bigint') return `bigint:${value}`
  if (typeof value === 'symbol') return `symbol:${value.description ?? ''}`
  if (typeof value === 'string') {
    if (SECRET_KEYS.has(name)) return hash(value)
    if (URL_KEYS.has(name)) return hideUrlPassword(value)
    return value
  }
  if (typeof value === 'function') return `function#${identity(value)}`
  if (value instanceof Uint8Array)
    return SECRET_KEYS.has(name) ? hash(value) : `bytes:${hash(value)}`
  if (value instanceof Date) return `date:${value.toISOString()}`
  if (value instanceof RegExp) return `regexp:${String(value)}`
  if (seen.has(value)) return `cycle#${identity(value)}`
  if (Array.isArray(value)) {
    seen.add(value)
    const out = value.map((item) => canonical(item, name, seen) ?? null)
    seen.delete(value)
    return out
  }
  // A class instance (a stream, a TypeOverrides, a custom Promise) is compared by identity.
  if (!isPlainObject(value)) return `instance#${identity(value)}`
  seen.add(value)
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(value).sort()) {
    const item = canonical((value as Record<string, unknown>)[key], key, seen)
    if (item !== undefined) out[key] = item
  }
  seen.delete(value)
  return out
}

/**
 * The canonical key of a set of pool options: a serialization that is independent of key order,
 * walks nested objects (`ssl`), compares functions (`typeCast`, a password callback) and class
 * instances by identity, and holds every credential only as a keyed hash. Equal options give
 * equal keys, so facades built from them share one pool (see `manage`).
 *
 * @example
 * ```ts
 * poolKey('pg', { host: 'db', password: 's3cret' }) === poolKey('pg', { password: 's3cret', host: 'db' }) // true
 * ```
 */
export function poolKey(kind: string, options: unknown): string {
  const top = typeof options === 'string' ? hideUrlPassword(options) : options
  return `${kind}:${JSON.stringify(canonical(top, '', new Set()) ?? null)}`
}
