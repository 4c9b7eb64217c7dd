import { readFileSync } from 'node:fs'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { collectPoolMetrics } from '../../src/metrics/prometheus.js'
import { tick } from '../support/clock.js'
import { useFakePools } from '../support/fake-pools.js'
import { parsePrometheus } from '../support/prometheus-text.js'
import { settle } from '../support/promises.js'

const dashboard = JSON.parse(
  readFileSync(new URL('../../docs/grafana-dashboard.json', import.meta.url), 'utf8'),
) as {
  panels: Array<{ title: string; type: string; targets?: Array<{ expr: string }> }>
  templating: { list: Array<{ definition?: string }> }
}

/** The PromQL functions, aggregations and keywords the dashboard may use: every other name is a metric. */
const PROMQL_WORDS = new Set([
  'sum',
  'max',
  'min',
  'avg',
  'count',
  'by',
  'without',
  'rate',
  'increase',
  'irate',
  'histogram_quantile',
  'label_values',
  'on',
  'ignoring',
  'and',
  'or',
  'unless',
])

/**
 * The metric names a PromQL expression reads: its identifiers, once the strings, label matchers,
 * `by (…)` groupings, `label_values`' label, range selectors, Grafana variables, numbers and PromQL's own words are gone.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    // Grafana's label_values(metric, label): the second argument is a label.
    .replace(/label_values\(([^,)]+),[^)]*\)/g, '$1')
    .replace(/"(?:[^"\\]|\\.)*"/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\$\w+/g, '')
  const names = bare.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? []
  return names.filter((name) => !PROMQL_WORDS.has(name))
}

/** Every expression in the dashboard: each panel's queries and the template variables'. */
const queries = [
  ...dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr)),
  ...dashboard.templating.list.flatMap((variable) =>
    variable.definition === undefined ? [] : [variable.definition],
  ),
]

const fake = useFakePools()

/** A refused connect, so that the connect-error counter has a series. */
class Refused extends Error {
  readonly code = 'ECONNREFUSED'
}

describe('docs/grafana-dashboard.json', () => {
  it('has queries, and each reads at least one metric', () => {
    expect(queries.length).toBeGreaterThan(15)
    for (const expr of queries) expect(metricNames(expr), expr).not.toEqual([])
  })

  it('names only metrics a pool really exports (after a workload that fills every series)', async () => {
    fake.dialect.server = { idleCutoffMs: 28_800_000, idleCutoffSetting: 'wait_timeout' }
    fake.dialect.script.push({ ms: 1, fail: new Refused('refused') })
    const registry = new Registry()
    const pool = fake.make({ name: 'dashboard', leakDetectionThreshold: 100 })
    collectPoolMetrics(pool, { registry })
    const lease = settle(pool.acquire())
    await tick(2_000)
    lease.value!.release()
    const exported = new Set(parsePrometheus(await registry.metrics()).map((s) => s.name))
    expect(exported.has('lifeguard_connection_connect_errors_total')).toBe(true)
    expect(exported.has('lifeguard_server_idle_cutoff_seconds')).toBe(true)
    const used = new Set(queries.flatMap(metricNames))
    expect([...used].filter((name) => !exported.has(name))).toEqual([])
    // And the dashboard shows every metric family the pool exports.
    const families = new Set([...exported].map((n) => n.replace(/_(bucket|sum|count)$/, '')))
    const shown = new Set([...used].map((n) => n.replace(/_(bucket|sum|count)$/, '')))
    expect([...families].filter((name) => !shown.has(name))).toEqual([])
  })

  it('finds a misspelt metric (the check itself works)', () => {
    expect(
      metricNames('sum by (pool_name) (rate(db_clinet_x_total{pool_name=~"$pool"}[5m]))'),
    ).toEqual(['db_clinet_x_total'])
  })
})
