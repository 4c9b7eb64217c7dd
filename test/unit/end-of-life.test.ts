import { describe, expect, it } from 'vitest'
import { spreadEndOfLife } from '../../src/core/end-of-life.js'

/** A seeded generator (mulberry32), so that each run draws the same candidates. */
function seeded(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('spreadEndOfLife: connections made together are not replaced together', () => {
  it('stays within [latest - band, latest]', () => {
    const random = seeded(1)
    for (let i = 0; i < 200; i++) {
      const end = spreadEndOfLife(10_000, 1_000, [9_500, 9_900], random)
      expect(end).toBeGreaterThanOrEqual(9_000)
      expect(end).toBeLessThanOrEqual(10_000)
    }
  })

  it('with no band, is exactly the latest end', () => {
    expect(spreadEndOfLife(10_000, 0, [10_000], seeded(2))).toBe(10_000)
  })

  it('picks the candidate farthest from the other ends of life', () => {
    // Candidates come from random(): the first draw is discarded when others exist, then 32.
    const draws = [0.5, 0.1, 0.45, 0.9, ...Array(29).fill(0.5)]
    let i = 0
    const random = () => draws[i++] ?? 0.5
    // Candidates 9_900, 9_550 and 9_100 (then 9_500s); another end of life at 9_600 is 300,
    // 50 and 500 ms from them: the farthest, 9_100, wins.
    expect(spreadEndOfLife(10_000, 1_000, [9_600], random)).toBe(9_100)
  })

  it('spreads ten connections made at once over the band', () => {
    const random = seeded(3)
    const ends: number[] = []
    for (let n = 0; n < 10; n++) ends.push(spreadEndOfLife(100_000, 10_000, ends, random))
    ends.sort((a, b) => a - b)
    const gaps = ends.slice(1).map((end, k) => end - ends[k]!)
    // Ten uniform draws in a 10 s band often land within a few ms of each other; best-candidate
    // sampling keeps every pair apart by a good share of the even spacing (~1.1 s).
    expect(Math.min(...gaps)).toBeGreaterThan(300)
    expect(ends[0]).toBeGreaterThanOrEqual(90_000)
    expect(ends[9]).toBeLessThanOrEqual(100_000)
  })
})
