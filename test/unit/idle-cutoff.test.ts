import { describe, expect, it } from 'vitest'
import { fitToIdleCutoff, type IdleSettings } from '../../src/core/idle-cutoff.js'

const OFF = Number.POSITIVE_INFINITY
const DEFAULTS: IdleSettings = { maxLifetime: 1_800_000, idleTimeout: 600_000, min: 0 }

describe('fitToIdleCutoff: the pool and doctor share one rule', () => {
  // [what, settings, cut-off in ms, maxLifetime after, idleTimeout after, options changed]
  const cases: Array<[string, IdleSettings, number | undefined, number, number, string[]]> = [
    ['no cut-off: nothing changes', DEFAULTS, undefined, 1_800_000, 600_000, []],
    ['a cut-off of 0 is off', DEFAULTS, 0, 1_800_000, 600_000, []],
    ['a NaN cut-off is ignored', DEFAULTS, Number.NaN, 1_800_000, 600_000, []],
    ["MySQL's 8 h wait_timeout: the defaults fit", DEFAULTS, 28_800_000, 1_800_000, 600_000, []],
    [
      'both above a 60 s cut-off, min 0: idleTimeout lowered to 54 s closes idle ones in time, maxLifetime stays',
      DEFAULTS,
      60_000,
      1_800_000,
      54_000,
      ['idleTimeout'],
    ],
    [
      'both above a 60 s cut-off, min 2: both lowered to 54 s',
      { ...DEFAULTS, min: 2 },
      60_000,
      54_000,
      54_000,
      ['maxLifetime', 'idleTimeout'],
    ],
    [
      'idleTimeout off: lowered, and maxLifetime off stays (the idle timer closes at the deadline)',
      { maxLifetime: OFF, idleTimeout: OFF, min: 0 },
      60_000,
      OFF,
      54_000,
      ['idleTimeout'],
    ],
    [
      'idleTimeout 10 s closes idle connections at 10 s < 20 s: maxLifetime 60 s is left alone',
      { maxLifetime: 60_000, idleTimeout: 10_000, min: 0 },
      20_000,
      60_000,
      10_000,
      [],
    ],
    [
      'the same with min 2: the kept idle connections need maxLifetime lowered',
      { maxLifetime: 60_000, idleTimeout: 10_000, min: 2 },
      20_000,
      18_000,
      10_000,
      ['maxLifetime'],
    ],
    [
      'idleTimeout 15 s closes at 15 s, within 90 % of a 20 s cut-off: maxLifetime left alone (it once lagged to 22.5 s)',
      { maxLifetime: 60_000, idleTimeout: 15_000, min: 0 },
      20_000,
      60_000,
      15_000,
      [],
    ],
    [
      'idleTimeout 19 s leaves less than 10 % of room before a 20 s cut-off: maxLifetime lowered',
      { maxLifetime: 60_000, idleTimeout: 19_000, min: 0 },
      20_000,
      18_000,
      19_000,
      ['maxLifetime'],
    ],
    [
      'idleTimeout 10 min closes by 10 min < 1 h: maxLifetime off stays',
      { maxLifetime: OFF, idleTimeout: 600_000, min: 0 },
      3_600_000,
      OFF,
      600_000,
      [],
    ],
    [
      'maxLifetime below the cut-off stays, whatever idleTimeout does',
      { maxLifetime: 50_000, idleTimeout: OFF, min: 3 },
      60_000,
      50_000,
      54_000,
      ['idleTimeout'],
    ],
    [
      'exactly at the cut-off counts as outliving it',
      { maxLifetime: 60_000, idleTimeout: 60_000, min: 1 },
      60_000,
      54_000,
      54_000,
      ['maxLifetime', 'idleTimeout'],
    ],
    [
      'a 1 ms cut-off lowers to 1 ms, never 0',
      { ...DEFAULTS, min: 1 },
      1,
      1,
      1,
      ['maxLifetime', 'idleTimeout'],
    ],
  ]
  it.each(cases)('%s', (_what, settings, cutoff, maxLifetime, idleTimeout, changed) => {
    const fit = fitToIdleCutoff(settings, cutoff, 'wait_timeout')
    expect(fit.maxLifetime).toBe(maxLifetime)
    expect(fit.idleTimeout).toBe(idleTimeout)
    expect(fit.changes.map((c) => c.option)).toEqual(changed)
    for (const change of fit.changes) {
      expect(change).toMatchObject({ setting: 'wait_timeout', cutoffMs: cutoff })
      expect(change.from).toBe(settings[change.option])
      expect(change.to).toBe(fit[change.option])
      expect(change.to).toBe(Math.max(1, Math.floor(cutoff! * 0.9)))
    }
  })

  it('names the setting generically when the dialect gave no name', () => {
    const [change] = fitToIdleCutoff(DEFAULTS, 60_000).changes
    expect(change?.setting).toBe('the server idle timeout')
  })
})
