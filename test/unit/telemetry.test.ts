import { describe, expect, it, vi } from 'vitest'
import { ConnectionRecord } from '../../src/core/connection-record.js'
import type { PoolEvents } from '../../src/core/events.js'
import { type PoolEventSink, PoolTelemetry } from '../../src/core/telemetry.js'

type Events = PoolEvents<string>

function record(id: number): ConnectionRecord<string> {
  const r = new ConnectionRecord<string>(id)
  r.connection = `connection ${id}`
  return r
}

/** Every telemetry call of a pool's life, once. */
function everything(telemetry: PoolTelemetry<string>): void {
  const r = record(1)
  telemetry.connected(r, 3)
  telemetry.acquired(r, undefined)
  telemetry.released(r, false)
  telemetry.reset(r, 'rollback', Number.NaN)
  telemetry.invalidated(r, 'ping', new Error('no pong'))
  telemetry.closed(r)
  telemetry.connectFailed(r, new Error('refused'), 1, 50)
  telemetry.leaked(r, 1000, 'stack')
  telemetry.server({ maxConnections: 10 })
  telemetry.clamped({ option: 'idleTimeout', from: 2, to: 1, setting: 'wait_timeout', cutoffMs: 1 })
  telemetry.dialectFailed('ref', new Error('nope'))
  telemetry.noServerLimits(new Error('nope'))
}

describe('PoolTelemetry: one point that tells who listens', () => {
  // NODE_DEBUG is not set in the unit tests, so the debug log is off: only the events remain.
  it('emits nothing and asks only whether anyone listens, when nobody does', () => {
    const sink: PoolEventSink<string> = {
      listening: vi.fn(() => false),
      emit: vi.fn(() => {
        throw new Error('emitted with nobody listening')
      }),
    }
    everything(new PoolTelemetry(sink, 'p', () => ''))
    expect(sink.emit).not.toHaveBeenCalled()
    expect(sink.listening).toHaveBeenCalledWith('acquire')
  })

  it('gives each listened event its payload', () => {
    const seen: Array<[keyof Events, unknown]> = []
    const sink: PoolEventSink<string> = {
      listening: (event) => event !== 'server',
      emit: (event, payload) => {
        seen.push([event, payload])
      },
    }
    const warning = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    const telemetry = new PoolTelemetry(sink, 'p', () => '')
    everything(telemetry)
    telemetry.warning('LIFEGUARD_POOL_EXCEEDS_SERVER', 'watch out')
    expect(warning).toHaveBeenCalledWith(
      'watch out [LIFEGUARD_POOL_EXCEEDS_SERVER, run: npx lifeguard explain pool_exceeds_server]',
      { code: 'LIFEGUARD_POOL_EXCEEDS_SERVER' },
    )
    warning.mockRestore()
    expect(seen.map(([event]) => event)).toEqual([
      'connect',
      'acquire',
      'release',
      'reset',
      'invalidate',
      'close',
      'connectError',
      'leak',
      'clamp',
      'warning',
    ])
    expect(seen[0]![1]).toEqual({ id: 1, connection: 'connection 1', durationMs: 3 })
    expect(seen[1]![1]).toEqual({ id: 1, connection: 'connection 1', waitMs: 0 })
    expect(seen[4]![1]).toMatchObject({ id: 1, reason: 'ping', error: new Error('no pong') })
    expect(seen[6]![1]).toEqual({ error: new Error('refused'), attempt: 1, retryInMs: 50 })
  })

  it('times waits, holds and resets only for someone who will see them', () => {
    let listened: string | undefined
    const telemetry = new PoolTelemetry<string>(
      { listening: (event) => event === listened, emit: () => {} },
      'p',
      () => '',
    )
    expect([telemetry.timesWaits(), telemetry.timesLeases(), telemetry.timesResets()]).toEqual([
      false,
      false,
      false,
    ])
    listened = 'acquire'
    expect(telemetry.timesWaits()).toBe(true)
    listened = 'release'
    expect(telemetry.timesLeases()).toBe(true)
    listened = 'reset'
    expect(telemetry.timesResets()).toBe(true)
  })
})
