import { debuglog } from 'node:util'
import type { PoolEvents } from './events.js'

const debug = debuglog('lifeguard')
/** Read once: `NODE_DEBUG` is fixed at start-up, and the getter costs ~40 ns on the hot path. */
const enabled = debug.enabled

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/**
 * The `NODE_DEBUG=lifeguard` log of one pool: one subscriber of its telemetry, which writes a
 * line per event with the pool's name and counts. Made only when the log is on (see
 * {@link debugLog}), so a pool that nobody debugs pays one `undefined` check per event.
 */
export class DebugLog<C> {
  private readonly label: string
  private readonly counts: () => string

  constructor(label: string, counts: () => string) {
    this.label = label
    this.counts = counts
  }

  /** Writes the line of `event`; `id` names the record of an event whose payload has none (`connectError`). */
  emit<K extends keyof PoolEvents<C>>(event: K, payload: PoolEvents<C>[K], id?: number): void {
    // One branch per event; the payload's type is narrowed by hand, as K is not.
    switch (event) {
      case 'connect': {
        const p = payload as PoolEvents<C>['connect']
        return this.line('connect', p.id, `in ${p.durationMs.toFixed(1)} ms`)
      }
      case 'acquire': {
        const p = payload as PoolEvents<C>['acquire']
        return this.line('acquire', p.id, `waited ${p.waitMs.toFixed(1)} ms`)
      }
      case 'release': {
        const p = payload as PoolEvents<C>['release']
        return this.line(p.destroyed ? 'destroy' : 'release', p.id)
      }
      case 'reset': {
        const p = payload as PoolEvents<C>['reset']
        return this.line(`reset (${p.mode})`, p.id)
      }
      case 'invalidate': {
        const p = payload as PoolEvents<C>['invalidate']
        return this.line(`invalidate (${p.reason})`, p.id)
      }
      case 'close':
        return this.line('close', (payload as PoolEvents<C>['close']).id)
      case 'connectError': {
        const p = payload as PoolEvents<C>['connectError']
        return this.line(
          'connect failed',
          id ?? 0,
          `${p.error.message}; retry in ${p.retryInMs} ms`,
        )
      }
      case 'unavailable': {
        const p = payload as PoolEvents<C>['unavailable']
        return this.line(`unavailable (${p.reason})`, 0, p.error.message)
      }
      case 'available': {
        const p = payload as PoolEvents<C>['available']
        return this.line('available', 0, `after ${Math.round(p.unavailableMs)} ms`)
      }
      case 'leak': {
        const p = payload as PoolEvents<C>['leak']
        return this.line('leak', p.id, `held ${Math.round(p.heldMs)} ms; acquired at ${p.stack}`)
      }
      case 'clamp': {
        const p = payload as PoolEvents<C>['clamp']
        debug(
          '%s %s lowered from %d to %d ms: the server drops idle sessions after %d ms (%s)',
          this.label,
          p.option,
          p.from,
          p.to,
          p.cutoffMs,
          p.setting,
        )
        return
      }
      // 'server' and 'warning' have no line: the warning goes to process.emitWarning anyway.
    }
  }

  /** Writes that a dialect call the pool can do without (`ref`, `unref`, `inspect`) failed. */
  failed(what: string, error: unknown): void {
    debug('%s %s failed: %s', this.label, what, messageOf(error))
  }

  /** Writes that the server's limits could not be read. */
  noServerLimits(error: unknown): void {
    debug('%s could not read the server limits: %s', this.label, messageOf(error))
  }

  /** Writes that a ping outlasted the hedge delay, so its waiter was offered another connection. */
  pingHedged(id: number, delayMs: number): void {
    this.line('ping hedged', id, `no answer after ${Math.round(delayMs)} ms`)
  }

  private line(what: string, id: number, detail?: string): void {
    debug(
      '%s %s #%d%s %s',
      this.label,
      what,
      id,
      detail === undefined ? '' : ` ${detail}`,
      this.counts(),
    )
  }
}

/** The debug log of a pool named `label`, or `undefined` unless `NODE_DEBUG` names lifeguard. */
export function debugLog<C>(label: string, counts: () => string): DebugLog<C> | undefined {
  return enabled ? new DebugLog<C>(label, counts) : undefined
}
