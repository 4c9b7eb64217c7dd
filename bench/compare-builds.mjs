// Compares two builds of lifeguard on the no-I/O loop, side by side in one process: a change's
// "no regression at 1000 callers" check. Each build is a checkout with `npm run build` done.
//
//   node --expose-gc bench/compare-builds.mjs --before /tmp/old --after . [--rounds 20]
//     [--window 1000] [--callers 1000] [--reset] [--ping]
//
// --reset gives the dialect a synchronous reset (a clean connection, as pg's and mysql2's are on
// most releases), which the plain no-I/O dialect lacks: the release path then runs the reset.
// --ping gives it a ping that answers at once and sets `prePing: 0`: every checkout of an idle
// connection is pre-pinged (use few callers, e.g. --callers 5, so that connections go idle).
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { compileLoop, measure } from './noio.mjs'
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
  },
})
if (values.before === undefined) {
  console.error('usage: compare-builds.mjs --before DIR [--after DIR] [--rounds N] [--reset]')
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

/**
 * One build as a contender of the no-I/O loop: its `createPool` over a no-op dialect.
 * @param {string} name
 * @param {{ createPool(options: object): any }} lifeguard
 */
function contender(name, lifeguard) {
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
      return {
        acquire: () => pool.acquire(),
        release: (/** @type {{ release(): void }} */ lease) => lease.release(),
        size: () => pool.stats().total,
        close: () => pool.destroy(),
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
    build: contender('after', await load(values.after)),
    loop: compileLoop(),
    cps: [],
  },
]
const ratios = []
for (let round = 0; round <= rounds; round++) {
  const order = round % 2 === 0 ? builds : [...builds].reverse()
  const seen = {}
  for (const b of order)
    seen[b.name] = await measure(b.build, b.loop, callers, round === 0 ? 100 : windowMs)
  if (round === 0) continue // warms the JIT up
  for (const b of builds) b.cps.push(seen[b.name])
  ratios.push(seen.after / seen.before)
}
const before = summarize(builds[0].cps)
const after = summarize(builds[1].cps)
const ratio = summarize(ratios)
const m = (x) => `${(x / 1e6).toFixed(2)}M`
console.log(
  `${callers} callers, pool 10, ${rounds} rounds of ${windowMs} ms${values.reset ? ', sync reset' : ''}${values.ping ? ', pre-ping on every checkout' : ''}`,
)
console.log(
  `before: median ${m(before.median)} cycles/s (min ${m(before.min)}, max ${m(before.max)})`,
)
console.log(`after:  median ${m(after.median)} cycles/s (min ${m(after.min)}, max ${m(after.max)})`)
console.log(
  `after / before, per round: median ${ratio.median.toFixed(3)}× (min ${ratio.min.toFixed(3)}×, max ${ratio.max.toFixed(3)}×)`,
)
