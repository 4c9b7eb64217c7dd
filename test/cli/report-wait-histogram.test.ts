import { describe, expect, it } from 'vitest'
import type { BenchReport } from '../../src/cli/bench-runner.js'
import { renderHtmlReport } from '../../src/cli/report-html.js'
import { reportFixture } from './support/report-fixture.js'

/** An SVG or HTML node of the stub DOM: its attributes, children and text. */
interface StubNode {
  name: string
  attrs: Record<string, string>
  children: StubNode[]
  textContent: string
  lastChild?: StubNode
}

/**
 * Runs the report's drawing script on a stub DOM (enough of it for the script: elements,
 * attributes, text and a text width), so that the charts are checked without a browser. The
 * headless-Chromium layout tests (report-layout.test.ts) check what this cannot: the rendering.
 */
function draw(report: BenchReport): { body: StubNode; made: StubNode[] } {
  const html = renderHtmlReport(report)
  const data = /<script type="application\/json" id="bench-data">([\s\S]*?)<\/script>/.exec(
    html,
  )![1]!
  const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]!
  const made: StubNode[] = []
  const node = (name: string): StubNode =>
    Object.assign(
      { name, attrs: {}, children: [], textContent: '' },
      {
        setAttribute(this: StubNode, key: string, value: unknown) {
          this.attrs[key] = String(value)
        },
        appendChild(this: StubNode, child: StubNode) {
          this.children.push(child)
          this.lastChild = child
          return child
        },
        removeChild() {},
        getComputedTextLength(this: StubNode) {
          return this.textContent.length * 7
        },
      },
    )
  const byId: Record<string, StubNode> = { 'bench-data': { ...node('script'), textContent: data } }
  const body = node('body')
  const document = {
    body,
    getElementById: (id: string) => (byId[id] ??= node(id)),
    createElementNS: (_ns: string, name: string) => {
      const made1 = node(name)
      made.push(made1)
      return made1
    },
  }
  new Function('document', script)(document)
  return { body, made }
}

describe('the bench report’s wait-time histogram', () => {
  it('draws a bar for each non-empty bucket of the lifeguard pool’s waits, and its percentiles', () => {
    const report = reportFixture()
    const { body, made } = draw(report)
    expect(body.attrs['data-charts-rendered']).toBe('4')
    const waits = report.modes.find((m) => m.mode === 'lifeguard')!.waitTime!
    const bars = made.filter((n) => n.name === 'rect' && n.attrs['data-wait-bucket'] !== undefined)
    expect(bars).toHaveLength(waits.counts.filter((n) => n > 0).length)
    expect(bars[0]!.attrs['data-wait-bucket']).toBe('0.1 ms')
    // 16 923 of the 35 463 waits are up to 250 ms, 34 723 up to 500 ms: p50 and p95 are in ≤ 500 ms.
    const headline = made.find((n) => n.name === 'text' && n.textContent.includes('acquires,'))
    expect(headline?.textContent).toBe(
      'lifeguard: 35463 acquires, mean 256.61 ms, p50 ≤ 500 ms, p95 ≤ 500 ms, p99 ≤ 1 s',
    )
    expect(renderHtmlReport(report)).toContain('db_client_connection_wait_time_seconds')
  })

  it('is left out when no mode measured waits (a run without the lifeguard mode)', () => {
    const report = reportFixture()
    report.modes = report.modes.map(({ waitTime: _w, ...m }) => m)
    const { body } = draw(report)
    expect(body.attrs['data-charts-rendered']).toBe('3')
    expect(renderHtmlReport(report)).not.toContain('id="chart-wait"')
  })
})
