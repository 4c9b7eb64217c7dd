// Compares two builds of lifeguard on the no-I/O loop, side by side in one process: a change's
// "no regression at 1000 callers" check. Each build is a checkout with `npm run build` done.
//
//   node --expose-gc bench/compare-builds.mjs --before /tmp/old --after . [--rounds 20]
//     [--window 1000] [--callers 1000] [--reset] [--ping] [--attach otel|prometheus|channels]
//
// --reset gives the dialect a synchronous reset (a clean connection, as pg's and mysql2's are on
// most releases), which the plain no-I/O dialect lacks: the release path then runs the reset.
// --ping gives it a ping that answers at once and sets `prePing: 0`: every checkout of an idle
// connection is pre-pinged (use few callers, e.g. --callers 5, so that connections go idle).
//
// --attach otel|prometheus|channels attaches an observer to the *after* build's pool only:
//   otel        its dist/otel.js `instrumentPool(pool, { meterProvider })`, with an sdk-metrics
//               MeterProvider over a manual reader (nothing exported during the window);
//   prometheus  its dist/prometheus.js `collectPoolMetrics(pool, { registry })`, a fresh registry;
//   channels    a no-op subscriber on every lifeguard diagnostics channel, for the after build's
//               windows only (channels are process-wide: the before build's windows run without).
// --cpu rates each window by the process's CPU time instead of the wall clock: cycles per CPU
// second. On a machine other work keeps busy, the time this process waits for a core then
// counts for neither build (the window itself never yields, see noio.mjs).
//
// `--before . --after . --attach otel` measures what the exporter alone costs; `--before <old>`
// measures it against the code before. A build without the exporter's entry point is refused.
import * as diagnostics from 'node:diagnostics_channel'
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { bounded, compileLoop, measure } from './noio.mjs'
import { warm } from './noio-contenders.mjs'
import { summarize } from './stats.mjs'

const { values } = parseArgs({
  options: {
    before: { type: 'string' },
    after: { type: 'string', default: '.' },
    rounds: { type: 'string', default: '20' },
    window: { type: 'string', default: '1000' },
    callers: { type: 'string', default: '1000' },
    reset: { type: 'boolean', default: false },
    ping: { type: 'boolean', default: false },
    attach: { type: 'string' },
    cpu: { type: 'boolean', default: false },
  },
})
if (values.before === undefined) {
  console.error('usage: compare-builds.mjs --before DIR [--after DIR] [--rounds N] [--reset]')
  process.exit(2)
}
if (values.attach !== undefined && !['otel', 'prometheus', 'channels'].includes(values.attach)) {
  console.error(`--attach ${values.attach}: expected otel, prometheus or channels`)
  process.exit(2)
}
const rounds = Number(values.rounds)
const windowMs = Number(values.window)
const callers = Number(values.callers)

/** @param {string} dir */
async function load(dir) {
  const module = await import(pathToFileURL(resolve(dir, 'dist/index.js')).href)
  return /** @type {{ createPool(options: object): any }} */ (module)
}

class Resource {}

/** The channels a lifeguard pool publishes on (docs/observability.md). */
const TRACING_CHANNELS = ['lifeguard:acquire', 'lifeguard:connect']
const PLAIN_CHANNELS = [
  'release',
  'reset',
  'invalidate',
  'close',
  'connectError',
  'unavailable',
  'available',
  'leak',
  'server',
  'clamp',
  'warning',
].map((name) => `lifeguard:${name}`)

/** Subscribes a no-op handler to every lifeguard channel; returns what unsubscribes them. */
function subscribeChannels() {
  const noop = () => {}
  const handlers = { start: noop, end: noop, asyncStart: noop, asyncEnd: noop, error: noop }
  for (const name of TRACING_CHANNELS) diagnostics.tracingChannel(name).subscribe(handlers)
  for (const name of PLAIN_CHANNELS) diagnostics.subscribe(name, noop)
  return () => {
    for (const name of TRACING_CHANNELS) diagnostics.tracingChannel(name).unsubscribe(handlers)
    for (const name of PLAIN_CHANNELS) diagnostics.unsubscribe(name, noop)
  }
}

/**
 * What `--attach` puts on a pool of the build in `dir`: a function that attaches it and returns
 * what detaches it.
 * @param {string} dir
 * @param {string | undefined} kind
 * @returns {Promise<((pool: any) => () => void) | undefined>}
 */
async function attacher(dir, kind) {
  if (kind === undefined) return undefined
  if (kind === 'channels') return () => subscribeChannels()
  const entry = resolve(dir, `dist/${kind}.js`)
  if (!existsSync(entry)) {
    console.error(`--attach ${kind}: ${entry} does not exist (a build without lifeguard/${kind})`)
    process.exit(2)
  }
  const module = await import(pathToFileURL(entry).href)
  if (kind === 'otel') {
    const { MeterProvider, MetricReader } = await import('@opentelemetry/sdk-metrics')
    // A reader that exports only when asked: the window measures the recording, not an export.
    class ManualReader extends MetricReader {
      async onForceFlush() {}
      async onShutdown() {}
    }
    return (pool) => {
      const meterProvider = new MeterProvider({ readers: [new ManualReader()] })
      const remove = module.instrumentPool(pool, { meterProvider })
      return () => {
        if (typeof remove === 'function') remove()
        void meterProvider.shutdown()
      }
    }
  }
  const { Registry } = await import('prom-client')
  return (pool) => {
    const registry = new Registry()
    const remove = module.collectPoolMetrics(pool, { registry })
    return () => {
      if (typeof remove === 'function') remove()
      registry.clear()
    }
  }
}

/**
 * One build as a contender of the no-I/O loop: its `createPool` over a no-op dialect.
 * @param {string} name
 * @param {{ createPool(options: object): any }} lifeguard
 */
function contender(name, lifeguard, attach) {
  return {
    name,
    create(/** @type {number} */ max) {
      const dialect = {
        name: 'noop',
        connect: async () => new Resource(),
        close: async () => {},
        ...(values.reset ? { reset: () => undefined } : {}),
        ...(values.ping ? { ping: async () => {} } : {}),
      }
      const pool = lifeguard.createPool({ dialect, max, ...(values.ping ? { prePing: 0 } : {}) })
      const detach = attach?.(pool)
      return {
        acquire: () => pool.acquire(),
        release: (/** @type {{ release(): void }} */ lease) => lease.release(),
        size: () => pool.stats().total,
        close: () => {
          detach?.()
          return pool.destroy()
        },
      }
    },
  }
}

const builds = [
  // Each build gets its own copy of the loop, so one build's type feedback never slows the other.
  {
    name: 'before',
    build: contender('before', await load(values.before)),
    loop: compileLoop(),
    cps: [],
  },
  {
    name: 'after',
    build: contender(
      'after',
      await load(values.after),
      await attacher(values.after, values.attach),
    ),
    loop: compileLoop(),
    cps: [],
  },
]
/**
 * `measure` of noio.mjs, rated by CPU time: cycles per CPU second of this process.
 * @param {any} contender
 * @param {any} loop
 * @param {number} callers
 * @param {number} windowMs
 */
async function measureCpu(contender, loop, callers, windowMs) {
  const pool = contender.create(10)
  try {
    await warm(pool, 10, contender.name)
    globalThis.gc?.()
    const state = { stop: false, count: 0, deadline: performance.now() + windowMs }
    const cpu = process.cpuUsage()
    const tasks = new Array(callers)
    for (let i = 0; i < callers; i++) tasks[i] = loop(pool, state)
    await bounded(Promise.all(tasks), windowMs * 10 + 10_000, `${contender.name}`)
    const used = process.cpuUsage(cpu)
    return state.count / ((used.user + used.system) / 1e6)
  } finally {
    await bounded(pool.close(), 10_000, `closing ${contender.name}`)
  }
}
const rate = values.cpu ? measureCpu : measure

const ratios = []
for (let round = 0; round <= rounds; round++) {
  const order = round % 2 === 0 ? builds : [...builds].reverse()
  const seen = {}
  for (const b of order)
    seen[b.name] = await rate(b.build, b.loop, callers, round === 0 ? 100 : windowMs)
  if (round === 0) continue // warms the JIT up
  for (const b of builds) b.cps.push(seen[b.name])
  ratios.push(seen.after / seen.before)
}
const before = summarize(builds[0].cps)
const after = summarize(builds[1].cps)
const ratio = summarize(ratios)
const m = (x) => `${(x / 1e6).toFixed(2)}M`
console.log(
  `${callers} callers, pool 10, ${rounds} rounds of ${windowMs} ms${values.reset ? ', sync reset' : ''}${values.ping ? ', pre-ping on every checkout' : ''}${values.attach ? `, after with ${values.attach} attached` : ''}${values.cpu ? ', per CPU second' : ''}`,
)
console.log(
  `before: median ${m(before.median)} cycles/s (min ${m(before.min)}, max ${m(before.max)})`,
)
console.log(`after:  median ${m(after.median)} cycles/s (min ${m(after.min)}, max ${m(after.max)})`)
console.log(
  `after / before, per round: median ${ratio.median.toFixed(3)}× (min ${ratio.min.toFixed(3)}×, max ${ratio.max.toFixed(3)}×)`,
)
