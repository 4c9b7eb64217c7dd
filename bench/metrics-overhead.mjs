// What attaching the metrics exporters costs: the no-I/O loop (acquire, release, on a no-op
// dialect, pool of 10) with nothing attached, with lifeguard/otel (the real OpenTelemetry SDK,
// collected by hand at the end) and with lifeguard/prometheus (a real prom-client registry),
// side by side in one process, the order rotating from round to round. Needs `npm run build`.
//
//   node --expose-gc bench/metrics-overhead.mjs [--rounds 10] [--window 1000] [--callers 1000]
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import { Registry } from 'prom-client'
import { compileLoop, measure } from './noio.mjs'
import { summarize } from './stats.mjs'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10' },
    window: { type: 'string', default: '1000' },
    callers: { type: 'string', default: '1000' },
  },
})
const rounds = Number(values.rounds)
const windowMs = Number(values.window)
const callers = Number(values.callers)
const dist = (name) => import(pathToFileURL(resolve('dist', `${name}.js`)).href)
const { createPool } = await dist('index')
const { instrumentPool } = await dist('otel')
const { collectPoolMetrics } = await dist('prometheus')

class ManualReader extends MetricReader {
  async onForceFlush() {}
  async onShutdown() {}
}
class Resource {}

/**
 * A contender: a lifeguard pool over a no-op dialect, with `attach` run on it.
 * @param {string} name
 * @param {(pool: any) => () => Promise<void>} attach returns what ends the attachment (after a collect)
 */
function contender(name, attach) {
  return {
    name,
    create(/** @type {number} */ max) {
      const dialect = { name: 'noop', connect: async () => new Resource(), close: async () => {} }
      const pool = createPool({ dialect, max })
      const detach = attach(pool)
      return {
        acquire: () => pool.acquire(),
        release: (/** @type {{ release(): void }} */ lease) => lease.release(),
        size: () => pool.stats().total,
        close: async () => {
          await detach()
          await pool.destroy()
        },
      }
    },
  }
}

const contenders = [
  contender('none', () => async () => {}),
  contender('listeners', (pool) => {
    const noop = () => {}
    for (const e of ['connect', 'acquire', 'release', 'invalidate']) pool.on(e, noop)
    return async () => {}
  }),
  contender('otel', (pool) => {
    const reader = new ManualReader()
    const meterProvider = new MeterProvider({ readers: [reader] })
    const stop = instrumentPool(pool, { meterProvider })
    return async () => {
      // The histograms really recorded: the wait count is read back, then all is shut.
      await reader.collect()
      stop()
      await meterProvider.shutdown()
    }
  }),
  contender('prometheus', (pool) => {
    const registry = new Registry()
    const stop = collectPoolMetrics(pool, { registry })
    return async () => {
      await registry.metrics()
      stop()
    }
  }),
].map((c) => ({ contender: c, loop: compileLoop(), cps: /** @type {number[]} */ ([]) }))

for (let round = 0; round <= rounds; round++) {
  const shift = round % contenders.length
  const order = [...contenders.slice(shift), ...contenders.slice(0, shift)]
  for (const c of order) {
    const cps = await measure(c.contender, c.loop, callers, round === 0 ? 100 : windowMs)
    if (round > 0) c.cps.push(cps) // round 0 warms the JIT up
  }
}
const base = summarize(contenders[0].cps).median
console.log(
  `${callers} callers, pool 10, ${rounds} rounds of ${windowMs} ms, Node ${process.version}`,
)
for (const c of contenders) {
  const s = summarize(c.cps)
  const m = (x) => `${(x / 1e6).toFixed(3)}M`
  console.log(
    `${c.contender.name.padEnd(11)} median ${m(s.median)} cycles/s (min ${m(s.min)}, max ${m(s.max)})  ${((s.median / base - 1) * 100).toFixed(1)}% vs none`,
  )
}
