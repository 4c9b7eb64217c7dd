import type { DialectTarget } from './dialect.js'

/** The name each open pool holds, with the pool: a default name is unique among them. */
const held = new Map<string, object>()

/** Numbers the pools whose dialect names no target: `pool-1`, `pool-2`, … */
let poolNumber = 0

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
  let name = address ?? ''
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
 * its name until it is closed.
 */
export const poolNames = {
  /** The name of a pool with no `name` option over a dialect whose target is `target`. */
  defaultFor(target: DialectTarget | undefined): string {
    return nameOf(target) ?? `pool-${++poolNumber}`
  },

  /**
   * Makes `pool` hold `name`, and returns the name it holds: `name` itself when it was given
   * (two pools may share a name the user chose), else the first of `name`, `name#2`, … no open
   * pool holds.
   */
  claim(pool: object, name: string, generated: boolean): string {
    let claimed = name
    if (generated) {
      for (let n = 2; held.has(claimed); n++) claimed = `${name}#${n}`
    }
    if (!held.has(claimed)) held.set(claimed, pool)
    return claimed
  },

  /** `pool` was closed: its name is free again, unless another pool holds it. */
  release(pool: object, name: string): void {
    if (held.get(name) === pool) held.delete(name)
  },
}
