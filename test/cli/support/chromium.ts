import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

/** Debian's Chromium, when installed. */
export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) =>
  existsSync(p),
)

/** The flags of a headless run that talks to nothing but the file it opens. */
function flags(profile: string): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--hide-scrollbars',
    `--user-data-dir=${profile}`,
  ]
}

/** Runs headless Chromium once on a local HTML file with a fresh profile, removed afterwards. */
function chromium(args: string[], file: string): Promise<string> {
  if (CHROMIUM === undefined) throw new Error('chromium is not installed')
  const profile = mkdtempSync(join(tmpdir(), 'lifeguard-chromium-'))
  return new Promise<string>((resolve, reject) => {
    execFile(
      CHROMIUM,
      [...flags(profile), ...args, pathToFileURL(file).href],
      { timeout: 60_000, maxBuffer: 32 * 1024 * 1024 },
      (error, stdout) => (error ? reject(error) : resolve(stdout)),
    )
  }).finally(() => rmSync(profile, { recursive: true, force: true }))
}

/** The DOM after the page's scripts ran (`--dump-dom`). */
export function dumpDom(file: string): Promise<string> {
  return chromium(['--virtual-time-budget=5000', '--dump-dom'], file)
}

/** Saves a PNG of the page at 1200 px wide. */
export async function screenshot(file: string, png: string, height = 1400): Promise<void> {
  await chromium(
    ['--virtual-time-budget=5000', `--window-size=1200,${height}`, `--screenshot=${png}`],
    file,
  )
}
