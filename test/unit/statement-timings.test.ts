import { describe, expect, it } from 'vitest'
import { SLOW_STATEMENT_MS, StatementTimings } from '../../src/compat/statement-timings.js'

// How lifeguard/pg learns which statement texts run long (and so seal their connection): a moving
// average of each text's own time, weight 0.3, over at most 1000 texts of at most 2000 characters.

describe('StatementTimings', () => {
  it('a text never seen is not slow', () => {
    const timings = new StatementTimings()
    expect(timings.slow('SELECT 1')).toBe(false)
  })

  it(`is slow from ${SLOW_STATEMENT_MS} ms on average, not below`, () => {
    expect(SLOW_STATEMENT_MS).toBe(10)
    const timings = new StatementTimings()
    timings.record('at', 10)
    timings.record('below', 9.99)
    timings.record('above', 250)
    expect(timings.slow('at')).toBe(true)
    expect(timings.slow('below')).toBe(false)
    expect(timings.slow('above')).toBe(true)
    // Each text on its own.
    expect(timings.slow('SELECT 1')).toBe(false)
  })

  it('one slow run makes a fast text slow: the average moves 0.3 of the way to each new run', () => {
    const timings = new StatementTimings()
    for (let i = 0; i < 50; i++) timings.record('q', 1)
    expect(timings.slow('q')).toBe(false)
    // 1 + 0.3 × (30 − 1) = 9.7: not yet.
    timings.record('q', 30)
    expect(timings.slow('q')).toBe(false)
    // 9.7 + 0.3 × (40 − 9.7) = 18.79.
    timings.record('q', 40)
    expect(timings.slow('q')).toBe(true)

    const once = new StatementTimings()
    for (let i = 0; i < 50; i++) once.record('q', 1)
    // 1 + 0.3 × (40 − 1) = 12.7: one run is enough.
    once.record('q', 40)
    expect(once.slow('q')).toBe(true)
  })

  it('repeated fast runs bring a slow text back under 10 ms: 9 runs of 0 ms after one of 200', () => {
    const timings = new StatementTimings()
    timings.record('q', 200)
    expect(timings.slow('q')).toBe(true)
    // 200 × 0.7^n < 10 ⇔ n > ln(0.05) / ln(0.7) ≈ 8.4: still slow after 8 (11.5 ms), not after 9 (8.1).
    for (let n = 1; n <= 8; n++) {
      timings.record('q', 0)
      expect(timings.slow('q'), `after ${n} fast runs`).toBe(true)
    }
    timings.record('q', 0)
    expect(timings.slow('q')).toBe(false)
  })

  it('ignores texts over 2000 characters (most likely built with their values inline)', () => {
    const timings = new StatementTimings()
    const longest = `SELECT ${'x'.repeat(2000 - 7)}`
    const tooLong = `${longest} `
    expect(longest).toHaveLength(2000)
    timings.record(longest, 500)
    timings.record(tooLong, 500)
    expect(timings.slow(longest)).toBe(true)
    expect(timings.slow(tooLong)).toBe(false)
  })

  it('remembers up to 1000 texts; a new one past that starts the memory again', () => {
    const timings = new StatementTimings()
    for (let i = 0; i < 1000; i++) timings.record(`SELECT ${i}`, 50)
    expect(timings.slow('SELECT 0')).toBe(true)
    expect(timings.slow('SELECT 999')).toBe(true)
    // A text already known moves its average: nothing is forgotten.
    timings.record('SELECT 0', 50)
    expect(timings.slow('SELECT 999')).toBe(true)
    // The 1001st text: everything before it is forgotten, and it is remembered.
    timings.record('SELECT 1000', 50)
    expect(timings.slow('SELECT 0')).toBe(false)
    expect(timings.slow('SELECT 999')).toBe(false)
    expect(timings.slow('SELECT 1000')).toBe(true)
    // A forgotten text starts again from its next run alone.
    timings.record('SELECT 0', 2)
    expect(timings.slow('SELECT 0')).toBe(false)
    timings.record('SELECT 1', 20)
    expect(timings.slow('SELECT 1')).toBe(true)
  })
})
