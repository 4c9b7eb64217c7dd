// What the metrics exporters cost on a workload with I/O: `SELECT 1` through lifeguard/postgres
// (pg) on a real PostgreSQL, 1000 callers, pool of 10, with nothing, lifeguard/prometheus and
// lifeguard/otel attached in turn, in one process, the order rotating from round to round. Rated
// by the wall clock (queries per second, which the server bounds) and by this process's CPU time
// (queries per CPU second: what the exporter adds to the client). Needs `npm run build`.
//
//   node bench/metrics-db-overhead.mjs [--rounds 6] [--window 2000]    (POSTGRES_URL)
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import { Registry } from 'prom-client'
import { summarize } from './stats.mjs'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    window: { type: 'string', default: '2000' },
  },
})
const rounds = Number(values.rounds)
const windowMs = Number(values.window)
const dist = (name) => import(pathToFileURL(resolve('dist', `${name}.js`)).href)
const { createPool } = await dist('index')
const { postgres } = await dist('postgres')
const { collectPoolMetrics } = await dist('prometheus')
const { instrumentPool } = await dist('otel')

class ManualReader extends MetricReader {
  async onForceFlush() {}
  async onShutdown() {}
}
const url = new URL(process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test')
url.searchParams.set('application_name', 'lifeguard-bench')

/** @type {Record<string, (pool: any) => () => void>} */
const attachers = {
  none: () => () => {},
  prometheus: (pool) => collectPoolMetrics(pool, { registry: new Registry() }),
  otel: (pool) =>
    instrumentPool(pool, { meterProvider: new MeterProvider({ readers: [new ManualReader()] }) }),
}
const contenders = Object.keys(attachers).map((name) => ({
  name,
  wall: /** @type {number[]} */ ([]),
  cpu: /** @type {number[]} */ ([]),
}))

for (let round = 0; round <= rounds; round++) {
  const shift = round % contenders.length
  for (const c of [...contenders.slice(shift), ...contenders.slice(0, shift)]) {
    const pool = createPool({ dialect: postgres(url.toString()), max: 10 })
    const detach = attachers[c.name](pool)
    const select = () => pool.use((/** @type {any} */ client) => client.query('SELECT 1'))
    await Promise.all(Array.from({ length: 10 }, select))
    const state = { stop: false, count: 0 }
    const started = performance.now()
    const cpu = process.cpuUsage()
    const timer = setTimeout(
      () => {
        state.stop = true
      },
      round === 0 ? 300 : windowMs,
    )
    await Promise.all(
      Array.from({ length: 1000 }, async () => {
        while (!state.stop) {
          await select()
          state.count++
        }
      }),
    )
    clearTimeout(timer)
    const elapsed = performance.now() - started
    const used = process.cpuUsage(cpu)
    detach()
    await pool.close({ timeout: 5_000 })
    if (round === 0) continue // warms the JIT up
    c.wall.push(state.count / (elapsed / 1000))
    c.cpu.push(state.count / ((used.user + used.system) / 1e6))
  }
}
const base = {
  wall: summarize(contenders[0].wall).median,
  cpu: summarize(contenders[0].cpu).median,
}
const k = (x) => `${(x / 1e3).toFixed(1)}k`
console.log(
  `SELECT 1, 1000 callers, pool 10, ${rounds} rounds of ${windowMs} ms, Node ${process.version}`,
)
for (const c of contenders) {
  const wall = summarize(c.wall)
  const cpu = summarize(c.cpu)
  console.log(
    `${c.name.padEnd(11)} ${k(wall.median)} q/s (${k(wall.min)}–${k(wall.max)}) ${(wall.median / base.wall).toFixed(3)}×  |  ${k(cpu.median)} q per CPU s (${k(cpu.min)}–${k(cpu.max)}) ${(cpu.median / base.cpu).toFixed(3)}×`,
  )
}
