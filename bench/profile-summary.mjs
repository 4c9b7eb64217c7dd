#!/usr/bin/env node
/**
 * Summarizes a V8 CPU profile (`node --cpu-prof`): the functions with the most self time, with
 * positions mapped back through source maps to `src/…ts:line`, and the hottest line of each.
 *
 *   node bench/profile-summary.mjs PROFILE.cpuprofile [--top=20] [--all]
 *
 * By default it lists lifeguard's own code only (frames whose source is under src/); `--all`
 * lists every frame, the driver's and the runtime's included.
 */
import { existsSync, readFileSync } from 'node:fs'
import { SourceMap } from 'node:module'
import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

/** @type {Map<string, SourceMap | null>} */
const maps = new Map()

/**
 * The source map next to a generated file, if any.
 * @param {string} url
 */
function mapOf(url) {
  if (!maps.has(url)) {
    let map = null
    if (url.startsWith('file://')) {
      const file = `${fileURLToPath(url)}.map`
      if (existsSync(file)) map = new SourceMap(JSON.parse(readFileSync(file, 'utf8')))
    }
    maps.set(url, map)
  }
  return maps.get(url) ?? null
}

/**
 * `file:line` of a generated position (both 0-based), mapped to the source when a map exists.
 * @param {string} url
 * @param {number} line
 * @param {number} column
 */
function where(url, line, column) {
  const map = mapOf(url)
  if (map !== null) {
    const entry = /** @type {any} */ (map.findEntry(line, column))
    if (entry?.originalSource !== undefined) {
      const source = entry.originalSource.startsWith('file://')
        ? fileURLToPath(entry.originalSource)
        : entry.originalSource
      const file = source.includes('/src/') ? source.slice(source.lastIndexOf('/src/') + 1) : source
      return `${file}:${entry.originalLine + 1}`
    }
  }
  if (url === '') return '(native)'
  const path = url.startsWith('file://') ? relative(root, fileURLToPath(url)) : url
  return `${path}:${line + 1}`
}

/**
 * The summary lines of a profile.
 * @param {any} profile
 * @param {{ top: number, all: boolean }} options
 * @returns {string[]}
 */
export function summarizeProfile(profile, { top, all }) {
  /** @type {Map<number, any>} */
  const nodes = new Map(profile.nodes.map((/** @type {any} */ n) => [n.id, n]))
  /** @type {Map<number, number>} */
  const self = new Map()
  let total = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + dt)
    total += dt
  }
  /** @type {Map<string, { name: string, at: string, us: number, lines: Map<string, number> }>} */
  const byFunction = new Map()
  for (const [id, us] of self) {
    const node = nodes.get(id)
    const { functionName, url, lineNumber, columnNumber } = node.callFrame
    const at = where(url, lineNumber, columnNumber)
    const key = `${functionName}@${at}`
    let entry = byFunction.get(key)
    if (entry === undefined) {
      entry = { name: functionName || '(anonymous)', at, us: 0, lines: new Map() }
      byFunction.set(key, entry)
    }
    entry.us += us
    for (const tick of node.positionTicks ?? []) {
      const line = where(url, tick.line - 1, 0)
      entry.lines.set(line, (entry.lines.get(line) ?? 0) + tick.ticks)
    }
  }
  const rows = [...byFunction.values()]
    .filter((e) => all || e.at.startsWith('src/'))
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
  return rows.map((e) => {
    const hottest = [...e.lines.entries()].sort((a, b) => b[1] - a[1])[0]
    const pct = ((e.us / total) * 100).toFixed(1).padStart(5)
    return `${pct}%  ${e.name}  ${e.at}${hottest === undefined ? '' : `  (hottest line ${hottest[0]})`}`
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, ...flags] = process.argv.slice(2)
  if (file === undefined) {
    process.stderr.write(
      'usage: node bench/profile-summary.mjs PROFILE.cpuprofile [--top=20] [--all]\n',
    )
    process.exit(1)
  }
  const top = Number(flags.find((f) => f.startsWith('--top='))?.slice(6) ?? 20)
  const lines = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')), {
    top,
    all: flags.includes('--all'),
  })
  process.stdout.write(`${lines.join('\n')}\n`)
}
