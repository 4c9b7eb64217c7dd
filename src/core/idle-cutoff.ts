/** The pool settings that the server's idle cut-off bears on; `Infinity` means off. */
export interface IdleSettings {
  /** How long a connection may live, in ms; `Infinity` when recycling is off. */
  maxLifetime: number
  /** How long a connection beyond `min` may sit idle, in ms; `Infinity` when reaping is off. */
  idleTimeout: number
  /** Idle connections the pool keeps however long they idle. */
  min: number
}

/** One setting the pool lowers so that the server never cuts a pooled connection first. */
export interface IdleSettingChange {
  option: 'maxLifetime' | 'idleTimeout'
  from: number
  to: number
  /** The server setting behind the cut-off, for messages (`wait_timeout`). */
  setting: string
  cutoffMs: number
}

/** The settings in force after {@link fitToIdleCutoff}, and what it changed, in that order. */
export interface IdleSettingsFit {
  maxLifetime: number
  idleTimeout: number
  changes: IdleSettingChange[]
}

/** A lowered setting is this share of the cut-off, leaving room for timers that fire late. */
const SHARE_OF_CUTOFF = 0.9

/**
 * Decides how the pool fits its idle settings under the server's idle cut-off (MySQL's
 * `wait_timeout`, PostgreSQL's `idle_session_timeout`), so that the pool closes an idle
 * connection before the server drops it ("server has gone away"). It is the one rule behind
 * the pool's `'clamp'` event and `lifeguard doctor`'s findings.
 *
 * - `idleTimeout` at or above the cut-off (or off) is lowered to 90 % of it.
 * - `maxLifetime` only matters to connections that idle without being closed for it: it is
 *   lowered to 90 % of the cut-off when it is at or above the cut-off (or off) and either the
 *   pool keeps `min` connections idle, or `idleTimeout` (after its own fit) leaves less than
 *   that 10 % of room before the cut-off. The housekeeper's idle timer closes an idle connection
 *   at its `idleTimeout` (src/core/housekeeper.ts), so the room is only for timers that fire
 *   late. Busy connections are never idle long enough for the server to cut them.
 *
 * With no cut-off (`undefined`, `0`, or not a number) nothing changes.
 *
 * @example
 * ```ts
 * fitToIdleCutoff({ maxLifetime: 1_800_000, idleTimeout: 600_000, min: 2 }, 60_000, 'wait_timeout')
 * // { maxLifetime: 54_000, idleTimeout: 54_000, changes: [{ option: 'maxLifetime', … }, …] }
 * ```
 */
export function fitToIdleCutoff(
  settings: IdleSettings,
  cutoffMs: number | undefined,
  setting = 'the server idle timeout',
): IdleSettingsFit {
  const { maxLifetime, idleTimeout, min } = settings
  if (cutoffMs === undefined || !(cutoffMs > 0)) return { maxLifetime, idleTimeout, changes: [] }
  const to = Math.max(1, Math.floor(cutoffMs * SHARE_OF_CUTOFF))
  const fit: IdleSettingsFit = { maxLifetime, idleTimeout, changes: [] }
  const newIdleTimeout = idleTimeout >= cutoffMs ? to : idleTimeout
  const idleOutlivesCutoff = min > 0 || newIdleTimeout > to
  if (maxLifetime >= cutoffMs && idleOutlivesCutoff) {
    fit.maxLifetime = to
    fit.changes.push({ option: 'maxLifetime', from: maxLifetime, to, setting, cutoffMs })
  }
  if (newIdleTimeout !== idleTimeout) {
    fit.idleTimeout = newIdleTimeout
    fit.changes.push({ option: 'idleTimeout', from: idleTimeout, to, setting, cutoffMs })
  }
  return fit
}
