/**
 * The statements that may share a connection: one statement that reads or writes rows and ends
 * with its own implicit transaction. Anything else keeps a connection to itself: transaction
 * control (BEGIN, COMMIT, SAVEPOINT…), session state (SET, RESET, DISCARD, PREPARE, LISTEN),
 * cursors (DECLARE, FETCH), COPY, DDL, CALL (a procedure may COMMIT), DO, and every other word.
 */
const SHAREABLE = /^(?:select|insert|update|delete|with|values|table|show)$/i

/**
 * A comment as PostgreSQL reads it, or less: a line comment ends at `\n` or `\r`, and a block
 * comment with another `/*` inside is no comment here (PostgreSQL nests them: `/* /* *\/ BEGIN
 * *\/` is all comment, and `/* /* *\/ SELECT *\/ BEGIN` is a BEGIN), so the text is refused.
 * Each has one possible length (a line comment runs to its line's end, a block comment to its
 * first `*\/`), and blanks are matched one at a time: no text can be split in more than one way,
 * so a text that fails fails in linear time. (`\s+` inside the `*` split a run of blanks every
 * way there is before failing: 2^n steps, which froze the event loop.)
 */
const COMMENT = String.raw`--[^\n\r]*(?=[\n\r]|$)|\/\*(?:[^*/]|\*(?!\/)|\/(?!\*))*\*\/`

/** Leading blanks and comments, then the first word. */
const FIRST_WORD = new RegExp(String.raw`^(?:\s|${COMMENT})*([A-Za-z]+)`)

/** What may follow a statement's last `;`: blanks, comments and more semicolons. */
const TRAILER = new RegExp(String.raw`^(?:\s|;|${COMMENT})*$`)

/**
 * Functions that change the session from inside a SELECT: `set_config(…, false)` (a setting such
 * as `search_path` that the statements pipelined behind it would run under), and the advisory
 * locks, held by the session. A text that calls one keeps a connection to itself.
 */
const SESSION_FUNCTIONS = /\b(?:set_config|pg_advisory_\w*|pg_try_advisory_\w*)\s*\(/i

/** Verdicts by statement text: ORMs send the same few texts again and again. */
const verdicts = new Map<string, boolean>()
const MAX_VERDICTS = 1000
const MAX_CACHED_LENGTH = 2000

/** Whether `text` is one statement that {@link SHAREABLE} allows. */
function judge(text: string): boolean {
  const word = FIRST_WORD.exec(text)?.[1]
  if (word === undefined || !SHAREABLE.test(word)) return false
  // Several statements in one simple query run as one transaction: `SELECT 1; BEGIN` would leave
  // one open. A `;` inside a string literal makes this refuse a statement it could share: safe.
  const semicolon = text.indexOf(';')
  if (semicolon !== -1 && !TRAILER.test(text.slice(semicolon))) return false
  return !SESSION_FUNCTIONS.test(text)
}

/**
 * Whether a `pool.query()` call of pg's may share a connection with other statements (be
 * pipelined): a query text, or a query config without `rows` (a portal read in pages) and that is
 * not a submittable (pg-cursor, pg-query-stream, pg-copy-streams), whose text is one statement
 * that reads or writes rows. Everything else runs on a connection of its own, as with pg's pool.
 */
export function pipelinable(query: unknown): boolean {
  let text: unknown = query
  if (typeof query === 'object' && query !== null) {
    const config = query as { text?: unknown; submit?: unknown; rows?: unknown }
    if (typeof config.submit === 'function' || config.rows !== undefined) return false
    text = config.text
  }
  if (typeof text !== 'string') return false
  let verdict = verdicts.get(text)
  if (verdict === undefined) {
    verdict = judge(text)
    // A long text is most likely built with its values inline, and never seen again.
    if (text.length <= MAX_CACHED_LENGTH) {
      if (verdicts.size >= MAX_VERDICTS) verdicts.clear()
      verdicts.set(text, verdict)
    }
  }
  return verdict
}
