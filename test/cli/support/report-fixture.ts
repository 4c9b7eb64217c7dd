import type { BenchModeResult, BenchReport } from '../../../src/cli/bench-runner.js'
import type { BenchMode } from '../../../src/cli/parse-args.js'
import { POOL_TIME_BUCKETS } from '../../../src/metrics/pool-metric-catalog.js'

/** A small deterministic generator, so that the fixture is the same on every run. */
function random(seed: number): () => number {
  let state = seed
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648
    return state / 2_147_483_648
  }
}

function mode(
  name: BenchMode,
  rps: number[],
  base: number[],
  sessions: (t: number, r: () => number) => number,
  refusedPerBucket: (t: number, r: () => number) => number,
): BenchModeResult {
  const r = random(name.length * 7919)
  const serverConnections: BenchModeResult['serverConnections'] = []
  for (let t = 0; t <= 10_000; t += 100) {
    const n = sessions(t, r)
    serverConnections.push([t, n, n + 1])
  }
  const refusedConnects: BenchModeResult['refusedConnects'] = []
  for (let t = 0; t < 10_000; t += 500) refusedConnects.push([t, refusedPerBucket(t, r)])
  const refused = refusedConnects.reduce((sum, [, n]) => sum + n, 0)
  const sorted = [...rps].sort((a, b) => a - b)
  const median = sorted[1]!
  const medianRound = rps.indexOf(median)
  const ratios = rps.map((v, i) => Math.round((v / base[i]!) * 100) / 100)
  const byKind: Record<string, number> =
    refused > 0 ? { 'Too many connections': refused, 'HTTP timeout': 739 } : {}
  const total = Object.values(byKind).reduce((a, b) => a + b, 0)
  const figures = {
    requests: { total: median * 10 + total, ok: median * 10 },
    latencyMs:
      name === 'per-request'
        ? { p50: 489, p90: 1300, p99: 7804, max: 10066, mean: 1200 }
        : { p50: 237, p90: 330, p99: 2382, max: 3530, mean: 260 },
    errors: { total, byKind },
    peakServerConnections: Math.max(...serverConnections.map(([, n]) => n)),
  }
  const baseMedian = [...base].sort((a, b) => a - b)[1]!
  return {
    mode: name,
    requestsPerSecond: median,
    ...figures,
    serverConnections,
    refusedConnects,
    ratioToPerRequest: Math.round((median / baseMedian) * 100) / 100,
    medianRound,
    spread: {
      requestsPerSecond: { min: sorted[0]!, max: sorted[2]! },
      ratioToPerRequest: { min: Math.min(...ratios), max: Math.max(...ratios) },
    },
    rounds: rps.map((v, i) => ({
      ...figures,
      requestsPerSecond: v,
      ratioToPerRequest: ratios[i]!,
    })),
  }
}

/**
 * A bench report shaped like the README's run (1000 clients, 3 rounds on the embedded
 * PostgreSQL): the per-request mode's sessions pressing on max_connections with refusals, and
 * both pools flat at 10, on top of each other, with the widest throughput label.
 */
export function reportFixture(): BenchReport {
  const base = [117, 61, 98]
  const pool = (t: number) => (t < 300 ? Math.round(t / 30) : 10)
  return {
    url: 'postgres://postgres:***@127.0.0.1:35119/postgres',
    clients: 1000,
    durationMs: 10_000,
    rounds: 3,
    max: 10,
    overflow: 0,
    modes: [
      mode(
        'per-request',
        base,
        base,
        (t, r) => (t < 500 ? Math.round(t / 6) : Math.min(99, Math.round(70 + r() * 40))),
        (t, r) => (t < 500 ? 0 : Math.round(r() * 260)),
      ),
      {
        ...mode('lifeguard', [3547, 3610, 3490], base, pool, () => 0),
        // 1000 clients on 10 connections: most requests wait 100–500 ms for one.
        waitTime: {
          bounds: [...POOL_TIME_BUCKETS],
          counts: [412, 3, 2, 5, 9, 14, 30, 88, 260, 1900, 14_200, 17_800, 700, 40, 0, 0, 0],
          count: 35_463,
          sumSeconds: 9_100,
        },
      },
      mode('driver-pool', [3852, 3790, 4010], base, pool, () => 0),
    ],
    server: {
      kind: 'postgres',
      version: '18.4',
      maxConnections: 100,
      usableConnections: 99,
      usableBy: "max_connections 100 − 1 (the bench's counting connection)",
      embedded: true,
      countedBy:
        "pg_stat_activity client backends with application_name = 'lifeguard-bench-x', or still authenticating",
    },
    startedAt: '2026-12-06T17:00:00.000Z',
    machine: {
      cpuModel: 'Intel(R) Xeon(R) Processor',
      cpus: 2,
      node: 'v20.20.2',
      os: 'linux 6.18.44-fc-v669',
    },
  }
}
