import type { DialectTarget } from './dialect.js'

/** The names the pools of this process hold, shared by every copy of lifeguard loaded. */
interface NameTable {
  /**
   * The name each open pool holds, with a weak reference to the pool: a pool dropped without
   * `close()` is collected, and its name is free again (else its replacements would drift to
   * `#2`, `#3`, …, a new metric label each time).
   */
  readonly held: Map<string, WeakRef<object>>
  /** Forgets the name of a collected pool. */
  readonly collected: FinalizationRegistry<string>
  /** Numbers the pools whose dialect names no target: `pool-1`, `pool-2`, … */
  poolNumber: number
}

/**
 * Kept on `globalThis` under a registry symbol, not in this module: when both the ES module and
 * the CommonJS build of lifeguard are loaded, two pools of the two copies must not get one name.
 */
const TABLE = Symbol.for('lifeguard.poolNames')

function makeTable(): NameTable {
  const held = new Map<string, WeakRef<object>>()
  return {
    held,
    collected: new FinalizationRegistry((name) => {
      if (held.get(name)?.deref() === undefined) held.delete(name)
    }),
    poolNumber: 0,
  }
}

const shared = globalThis as Record<symbol, NameTable | undefined>
shared[TABLE] ??= makeTable()
const table = shared[TABLE]
const held = table.held

/** The pool holding `name`, if it is still open and not collected. */
function holder(name: string): object | undefined {
  const pool = held.get(name)?.deref()
  if (pool === undefined) held.delete(name)
  return pool
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

/**
 * The OpenTelemetry convention's name for a pool that has none: `server.address:server.port/db.namespace`
 * (`db.client.connection.pool.name`), with the parts the target has; `undefined` when it has none.
 */
function nameOf(target: DialectTarget | undefined): string | undefined {
  if (typeof target !== 'object' || target === null) return undefined
  const address = text(target.address)
  const port = target.port
  const namespace = text(target.namespace)
  // An IPv6 address is bracketed, as in a URL, so that its port stays apart (`[::1]:5432`).
  let name = address?.includes(':') && !address.startsWith('/') ? `[${address}]` : (address ?? '')
  if (address !== undefined && typeof port === 'number' && Number.isInteger(port) && port > 0) {
    name += `:${port}`
  }
  if (namespace !== undefined) name += address === undefined ? namespace : `/${namespace}`
  return name === '' ? undefined : name
}

/**
 * The names of the pools of this process. A pool given no `name` is named after its dialect's
 * {@link DialectTarget} (`127.0.0.1:5432/app`), or `pool-N` when the dialect names none; the
 * name is made unique among the open pools (`#2`, `#3`, … appended), as the convention asks of
 * `db.client.connection.pool.name` ("unique within the instrumented application"). A pool holds
 * its name until it is closed, or collected when dropped unclosed.
 */
export const poolNames = {
  /** The name of a pool with no `name` option over a dialect whose target is `target`. */
  defaultFor(target: DialectTarget | undefined): string {
    return nameOf(target) ?? `pool-${++table.poolNumber}`
  },

  /**
   * Makes `pool` hold `name`, and returns the name it holds: `name` itself when it was given
   * (two pools may share a name the user chose), else the first of `name`, `name#2`, … no open
   * pool holds.
   */
  claim(pool: object, name: string, generated: boolean): string {
    let claimed = name
    if (generated) {
      for (let n = 2; holder(claimed) !== undefined; n++) claimed = `${name}#${n}`
    }
    if (holder(claimed) === undefined) {
      held.set(claimed, new WeakRef(pool))
      table.collected.register(pool, claimed)
    }
    return claimed
  },

  /** `pool` was closed: its name is free again, unless another pool holds it. */
  release(pool: object, name: string): void {
    if (holder(name) === pool) held.delete(name)
  },
}
