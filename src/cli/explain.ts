import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { ERROR_CODES, WARNING_CODES } from '../core/errors.js'

/** One code's section of docs/errors.md. */
export interface CodeSection {
  /** The code, such as `LIFEGUARD_ACQUIRE_TIMEOUT`. */
  code: string
  /** The section's markdown, from its heading to the next heading of the same level. */
  markdown: string
  /** The section's first sentence of explanation, as plain text on one line. */
  summary: string
}

/** What `lifeguard explain` printed, and the exit code (docs/cli.md). */
export interface ExplainResult {
  exitCode: 0 | 1 | 2
  stdout: string
  stderr: string
}

/** Every code the package knows: errors first, then warnings, each in the order of docs/errors.md. */
const CODES: readonly string[] = [...ERROR_CODES, ...WARNING_CODES]

/** The longest summary line `lifeguard explain` prints in its list, so that each stays one line. */
const SUMMARY_WIDTH = 100

/**
 * Where docs/errors.md sits beside the CLI's own file: the published package has `dist/cli.js`
 * and `docs/errors.md` (package.json's `files`), a clone run from source has `src/cli/main.ts`.
 * Found from the CLI's path rather than from the working directory, so that `npx lifeguard
 * explain` reads the docs of the very version that threw the error.
 */
export function errorsDocCandidates(cliFile: string): string[] {
  const here = dirname(cliFile)
  return [join(here, '..', 'docs', 'errors.md'), join(here, '..', '..', 'docs', 'errors.md')]
}

/**
 * Reads a code as a user may type it: `LIFEGUARD_ACQUIRE_TIMEOUT`, `acquire_timeout`,
 * `acquire-timeout`, the docs' anchor `#lifeguard_acquire_timeout`, in any case. Returns the
 * code in its canonical form, or `undefined` when it is not one of lifeguard's.
 */
export function canonicalCode(input: string): string | undefined {
  const words = input
    .trim()
    .replace(/^#/, '')
    .replace(/[-\s]+/g, '_')
    .toUpperCase()
  const code = words.startsWith('LIFEGUARD_') ? words : `LIFEGUARD_${words}`
  return CODES.includes(code) ? code : undefined
}

/** One line of plain text from a paragraph of markdown: no code spans, links or emphasis. */
function plain(markdown: string): string {
  return markdown
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[`*]/g, '')
    .replace(/\s+/g, ' ')
    .trim()
}

/** The first sentence of the section's explanation, after the line that names its class. */
function summaryOf(body: string): string {
  const paragraphs = body
    .split(/\n\s*\n/)
    .map((p) => p.trim())
    .filter((p) => p !== '' && !p.startsWith('```'))
  // The first paragraph names the class or kind and the code; the next one explains.
  const text = plain(paragraphs.find((p, i) => i > 0 || !/code `LIFEGUARD_/.test(p)) ?? '')
  // Up to the first full stop, colon or semicolon that ends a clause.
  const sentence = /^.+?[.:;](?=\s|$)/.exec(text)?.[0] ?? text
  const oneLine = sentence.replace(/[:;]$/, '.')
  return oneLine.length <= SUMMARY_WIDTH ? oneLine : `${oneLine.slice(0, SUMMARY_WIDTH - 1)}…`
}

/**
 * Splits docs/errors.md into the sections of its codes: each is a level-2 heading that is the
 * code in lower case (`## lifeguard_acquire_timeout`, which is also its anchor on GitHub).
 */
export function codeSections(markdown: string): Map<string, CodeSection> {
  const sections = new Map<string, CodeSection>()
  const lines = markdown.split('\n')
  let inFence = false
  let current: { code: string; lines: string[] } | undefined
  const finish = () => {
    if (current === undefined) return
    const text = current.lines.join('\n').trim()
    const body = text.slice(text.indexOf('\n') + 1)
    sections.set(current.code, { code: current.code, markdown: text, summary: summaryOf(body) })
    current = undefined
  }
  for (const line of lines) {
    // A `#` inside a code block is no heading.
    if (line.startsWith('```')) inFence = !inFence
    const heading = inFence ? null : /^(#{1,2}) (.*)$/.exec(line)
    if (heading !== null) {
      finish()
      const anchor = heading[2]!.trim()
      if (heading[1] === '##' && /^lifeguard_[a-z0-9_]+$/.test(anchor)) {
        current = { code: anchor.toUpperCase(), lines: [] }
      }
    }
    current?.lines.push(line)
  }
  finish()
  return sections
}

function readDoc(cliFile: string): { path: string; sections: Map<string, CodeSection> } | string {
  const candidates = errorsDocCandidates(cliFile)
  const path = candidates.find((candidate) => existsSync(candidate))
  if (path === undefined) {
    return `lifeguard explain: cannot find docs/errors.md beside the CLI (looked at ${candidates.join(', ')}); reinstall lifeguard`
  }
  return { path, sections: codeSections(readFileSync(path, 'utf8')) }
}

function list(sections: Map<string, CodeSection>): string {
  const width = Math.max(...CODES.map((code) => code.length))
  const row = (code: string) =>
    `  ${code.padEnd(width)}  ${sections.get(code)?.summary ?? '(not documented)'}`
  return [
    'Every code of lifeguard; "lifeguard explain CODE" prints what it means and what to do.',
    '',
    'Errors (error.code):',
    ...ERROR_CODES.map(row),
    '',
    'Warnings (the pool\'s "warning" event and process warnings):',
    ...WARNING_CODES.map(row),
    '',
  ].join('\n')
}

/**
 * Runs `lifeguard explain [CODE]`: prints a code's section of the docs/errors.md shipped with
 * the package (exit 0), or with no code every code with a one-line summary (exit 0). A code
 * lifeguard does not have is a usage error (exit 2); docs missing from the install, exit 1.
 *
 * @param cliFile The path of the running CLI file, from which docs/errors.md is found.
 */
export function explain(input: string | undefined, cliFile: string): ExplainResult {
  const doc = readDoc(cliFile)
  if (typeof doc === 'string') return { exitCode: 1, stdout: '', stderr: doc }
  if (input === undefined) return { exitCode: 0, stdout: list(doc.sections), stderr: '' }
  const code = canonicalCode(input)
  if (code === undefined) {
    // The input may be anything pasted from a log: show a short, harmless part of it.
    const shown = input.includes('://') ? '(a URL)' : input.slice(0, 60)
    return {
      exitCode: 2,
      stdout: '',
      stderr: `lifeguard explain: no code "${shown}"; run "lifeguard explain" to list every code`,
    }
  }
  const section = doc.sections.get(code)
  if (section === undefined) {
    return {
      exitCode: 1,
      stdout: '',
      stderr: `lifeguard explain: ${doc.path} has no section for ${code}; reinstall lifeguard`,
    }
  }
  return {
    exitCode: 0,
    stdout: `${section.markdown}\n\n(${doc.path}#${code.toLowerCase()})\n`,
    stderr: '',
  }
}
