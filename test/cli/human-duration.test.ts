import { describe, expect, it } from 'vitest'
import { humanDuration } from '../../src/cli/human-duration.js'

describe('humanDuration: doctor prints durations as a person reads them', () => {
  it.each([
    [28_800_000, '8 h'],
    [25_920_000, '7 h 12 min'],
    [1_800_000, '30 min'],
    [600_000, '10 min'],
    [3_630_000, '1 h 30 s'],
    [90_000, '1 min 30 s'],
    [54_000, '54 s'],
    [1_500, '1.5 s'],
    [250, '250 ms'],
    [0.42, '0.42 ms'],
    [172_800_000, '2 d'],
    [0, 'off'],
    [Number.POSITIVE_INFINITY, 'off'],
    [null, 'off'],
  ])('%s ms reads %s', (ms, text) => {
    expect(humanDuration(ms)).toBe(text)
  })
})
