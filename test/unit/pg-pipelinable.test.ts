import { describe, expect, it } from 'vitest'
import { pipelinable } from '../../src/dialects/pg-pipelinable.js'

// What lifeguard/pg's pool.query() may pipeline on a shared connection: one statement that reads
// or writes rows in its own implicit transaction. Anything that could leave state on the
// connection (a transaction, a setting, a cursor, a prepared statement…) is refused, and so is
// anything the classifier cannot read for sure.

/** Runs one table: each row is its own test, named by its query. */
function _table(cases: readonly unknown[], expected: boolean): void {
  it.each(cases.map((query) => ({ query, shown: JSON.stringify(query) ?? String(query) })))(
    `$shown → ${expected}`,
    ({ query }) => {
      expect(pipelinable(query)).toBe(expected)
      // The verdict is cached by text: the second answer is the same.
      expect(pipelinable(query)).toBe(expected)
    },
  )
}

describe('pipelinable: regressions', () => {
  it('regression: a run of blanks before what cannot be shared is refused in linear time (the event loop froze for seconds)', () => {
    // Unique texts, so that no cached verdict answers. With `\s+` inside the patterns' `*`, each
    // of these took 2^24 steps before it failed (seconds in all); now microseconds.
    const blanks = ' \t'.repeat(12)
    const texts = [`${blanks}(SELECT 1)`, `SELECT 1;${blanks}SELECT 2`, `SELECT 1; ${blanks}x`]
    const started = performance.now()
    for (const text of texts) expect(pipelinable(text)).toBe(false)
    expect(performance.now() - started).toBeLessThan(250)
    // The same shapes that can be shared still are, even very long.
    const long = ' \n'.repeat(100_000)
    const at = performance.now()
    expect(pipelinable(`${long}SELECT 1;${long}-- done${long}`)).toBe(true)
    expect(pipelinable(`${long}SELECT 1;${long}x`)).toBe(false)
    expect(performance.now() - at).toBeLessThan(1_000)
  })

  it('regression: a nested block comment or a line comment ended by a carriage return no longer hides a statement (BEGIN ran on a shared connection)', () => {
    // PostgreSQL nests block comments and ends a line comment at \r: each of these leaves a
    // transaction open (checked on PostgreSQL 15), though the old patterns read one SELECT.
    expect(pipelinable('SELECT 1; /* /* */ -- */ BEGIN')).toBe(false)
    expect(pipelinable('/* /* */ SELECT */ BEGIN')).toBe(false)
    expect(pipelinable('SELECT 1; -- note\rBEGIN')).toBe(false)
    // Comments that PostgreSQL and the classifier read alike still pass.
    expect(pipelinable('-- note\r\nSELECT 1')).toBe(true)
    expect(pipelinable('SELECT 1; -- note\r\n')).toBe(true)
    expect(pipelinable('/* a * b / c **/ SELECT 1 /* x */;')).toBe(true)
    expect(pipelinable('/*/ odd but closed */ SELECT 1')).toBe(true)
  })
})
