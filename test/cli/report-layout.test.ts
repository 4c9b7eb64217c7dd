import { describe, expect, it } from 'vitest'
import { renderHtmlReport } from '../../src/cli/report-html.js'
import { noiseLine, refusedTotal, renderTable } from '../../src/cli/report-table.js'
import { IN_CI } from '../support/servers.js'
import { CHROMIUM, measureLayout } from './support/chromium.js'
import { reportFixture } from './support/report-fixture.js'

const browser = CHROMIUM === undefined && !IN_CI ? describe.skip : describe

describe('the bench report tells the truth', () => {
  it('says how noisy one run is, from the spread over the rounds', () => {
    const report = reportFixture()
    const line = noiseLine(report)
    // per-request: median 98, rounds 61–117: one round strayed 38 % from the median.
    expect(line).toContain('over 3 rounds')
    expect(line).toContain('up to 38 % from the median (per-request')
    expect(line).toMatch(/lifeguard \d+\.\d×–\d+\.\d×/)
    expect(renderTable(report)).toContain(line)
  })

  it('says that one round cannot tell the noise', () => {
    const report = { ...reportFixture(), rounds: 1 }
    expect(noiseLine(report)).toContain('one round only')
    expect(renderTable(report)).not.toContain('min–max')
  })

  it('shows the spread next to each median in the table', () => {
    const table = renderTable(reportFixture())
    expect(table).toMatch(/per-request\s+98\s+61–117\s+1\.00×\s+–\s/)
    expect(table).toMatch(/lifeguard\s+3547\s+3490–3610\s+36\.2×\s+30\.\d×–59\.\d×/)
  })

  it('counts the refused connects the chart draws as the errors do', () => {
    const perRequest = reportFixture().modes[0]!
    expect(refusedTotal(perRequest)).toBe(perRequest.errors.byKind['Too many connections'])
  })
})

browser('the bench report in headless Chromium', () => {
  const html = renderHtmlReport(reportFixture())

  it.each([900, 1400])('clips and overlaps no label at %i px', async (width) => {
    const layout = await measureLayout(html, width)
    expect(layout.width).toBeLessThanOrEqual(width)
    // The three charts, and the lifeguard pool's wait-time histogram.
    expect(layout.chartsRendered).toBe(4)
    expect(layout.clipped).toEqual([])
    expect(layout.tiny).toEqual([])
    expect(layout.overlapping).toEqual([])
    expect(layout.overflowing).toEqual([])
  })

  it('keeps lines that lie on top of each other visible: each later one narrower or dashed', async () => {
    const { lines, refusedBars } = await measureLayout(html, 1400)
    expect(lines.map((l) => l.mode).sort()).toEqual(['driver-pool', 'lifeguard', 'per-request'])
    const looks = new Set(lines.map((l) => `${l.stroke} ${l.width} ${l.dash}`))
    expect(looks.size).toBe(3)
    lines.forEach((line, i) => {
      const below = lines.slice(0, i)
      const dashed = line.dash !== 'none' && line.dash !== ''
      expect(
        dashed || below.every((b) => line.width < b.width),
        `${line.mode} would hide ${below.map((b) => b.mode).join(', ')}`,
      ).toBe(true)
    })
    // The both pools' lines, flat at 10 in the fixture, are the ones that overlap.
    const pools = lines.filter((l) => l.mode !== 'per-request')
    expect(pools.some((l) => l.dash !== 'none')).toBe(true)
    // A bar for every interval in which the server refused connects, and only for per-request.
    const withRefusals = reportFixture().modes[0]!.refusedConnects.filter(([, n]) => n > 0)
    expect(refusedBars).toEqual({ 'per-request': withRefusals.length })
  })
})
