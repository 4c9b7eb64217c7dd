import { describe, expect, it } from 'vitest'
import { pipelinable } from '../../src/dialects/pg-pipelinable.js'

// What lifeguard/pg's pool.query() may pipeline on a shared connection: one statement that reads
// or writes rows in its own implicit transaction. Anything that could leave state on the
// connection (a transaction, a setting, a cursor, a prepared statement…) is refused, and so is
// anything the classifier cannot read for sure.

/** Runs one table: each row is its own test, named by its query. */
function table(cases: readonly unknown[], expected: boolean): void {
  it.each(cases.map((query) => ({ query, shown: JSON.stringify(query) ?? String(query) })))(
    `$shown → ${expected}`,
    ({ query }) => {
      expect(pipelinable(query)).toBe(expected)
      // The verdict is cached by text: the second answer is the same.
      expect(pipelinable(query)).toBe(expected)
    },
  )
}

describe('pipelinable: the statements that may share a connection', () => {
  describe('one statement that reads or writes rows', () => {
    table(
      [
        'SELECT 1',
        'select * from t where id = $1',
        'SeLeCt now()',
        'INSERT INTO t (a) VALUES ($1) RETURNING id',
        'UPDATE t SET a = $1 WHERE id = $2',
        'DELETE FROM t WHERE id = $1',
        'WITH a AS (SELECT 1) SELECT * FROM a',
        'VALUES (1), (2)',
        'TABLE t',
        'SHOW server_version',
        "SELECT 'begin'",
        'SELECT * FROM t FOR UPDATE',
      ],
      true,
    )
  })

  describe('leading blanks and comments, trailing semicolons and comments', () => {
    table(
      [
        '  SELECT 1',
        '\n\n\tSELECT 1',
        '-- the users\nSELECT * FROM users',
        '/* app:api */ SELECT 1',
        '/* one */ -- two\n  /* three\n spanning lines */\nSELECT 1',
        'SELECT 1;',
        'SELECT 1;;',
        'SELECT 1 ;  \n',
        'SELECT 1; -- done',
        'SELECT 1; /* done */',
        'SELECT 1; /* a */ ; -- b\n',
        '--\nSELECT 1',
      ],
      true,
    )
  })

  describe('query configs without rows, and not submittables', () => {
    table(
      [
        { text: 'SELECT 1' },
        { text: 'SELECT $1::int', values: [1] },
        { text: 'SELECT 1', rowMode: 'array' },
        { text: 'INSERT INTO t VALUES ($1)', values: [1], name: 'insert-t' },
      ],
      true,
    )
  })
})

describe('pipelinable: the statements that keep a connection to themselves', () => {
  describe('transaction control', () => {
    table(
      [
        'BEGIN',
        'begin',
        'START TRANSACTION',
        'COMMIT',
        'END',
        'ROLLBACK',
        'ABORT',
        'SAVEPOINT s1',
        'RELEASE SAVEPOINT s1',
        'ROLLBACK TO SAVEPOINT s1',
        'PREPARE TRANSACTION $$t1$$',
      ],
      false,
    )
  })

  describe('session state, cursors, COPY, procedures, DDL', () => {
    table(
      [
        'SET search_path TO app',
        'SET LOCAL statement_timeout = 0',
        'RESET ALL',
        'DISCARD ALL',
        'LISTEN jobs',
        'UNLISTEN *',
        'NOTIFY jobs',
        'COPY t FROM STDIN',
        'COPY t TO STDOUT',
        'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
        'FETCH 10 FROM c',
        'CLOSE c',
        'PREPARE q AS SELECT 1',
        'EXECUTE q',
        'DEALLOCATE q',
        'CALL do_work()',
        'DO $$ BEGIN PERFORM 1; END $$',
        'CREATE TABLE t (a int)',
        'CREATE TEMP TABLE t (a int)',
        'ALTER TABLE t ADD b int',
        'DROP TABLE t',
        'TRUNCATE t',
        'LOCK TABLE t',
        'VACUUM t',
        'EXPLAIN ANALYZE SELECT 1',
      ],
      false,
    )
  })

  describe('a SELECT that changes the session: set_config() and the advisory locks', () => {
    table(
      [
        "SELECT set_config('search_path', 'other', false)",
        'select SET_CONFIG ($1, $2, false)',
        'SELECT pg_advisory_lock(42)',
        'SELECT pg_try_advisory_lock($1)',
        'SELECT pg_advisory_unlock_all()',
        'WITH l AS (SELECT pg_advisory_xact_lock(1)) SELECT 1 FROM l',
      ],
      false,
    )
    it('a function whose name only ends like one of them still shares', () => {
      expect(pipelinable('SELECT my_set_config(1)')).toBe(true)
      expect(pipelinable('SELECT set_configuration FROM t')).toBe(true)
    })
  })

  describe('more than one statement, or one the classifier cannot read for sure', () => {
    table(
      [
        'SELECT 1; BEGIN',
        'SELECT 1;BEGIN',
        'SELECT 1; SELECT 2',
        'INSERT INTO t VALUES (1); COMMIT',
        'SELECT 1; -- done\nBEGIN',
        'SELECT 1; /* done */ SET x = 1',
        // A `;` inside a literal or identifier: refused, though it is one statement (safe).
        "SELECT ';'",
        "INSERT INTO t (note) VALUES ('a; b')",
        'SELECT $$;$$',
        'SELECT 1 AS "a;b"',
        // A parenthesised query has no first word to read.
        '(SELECT 1)',
        // A comment that never ends, or only comments.
        '/* SELECT 1',
        '-- SELECT 1',
        '/* SELECT 1 */',
        '',
        '   ',
        ';',
      ],
      false,
    )
  })

  describe('query configs with rows, submittables, and what is not a query', () => {
    table(
      [
        { text: 'SELECT * FROM t', rows: 100 },
        { text: 'SELECT * FROM t', rows: 0 },
        { text: 'SELECT 1', submit: () => {} },
        { text: 'BEGIN' },
        { values: [1] },
        { text: 42 },
        {},
        null,
        undefined,
        42,
        true,
        ['SELECT 1'],
      ],
      false,
    )

    it('a submittable (pg-cursor, pg-query-stream, pg-copy-streams) is refused whatever its text', () => {
      class Cursor {
        readonly text = 'SELECT * FROM t'
        submit(): void {}
      }
      expect(pipelinable(new Cursor())).toBe(false)
    })

    it('a String object is not a query text', () => {
      expect(pipelinable(new String('SELECT 1'))).toBe(false)
    })
  })
})

describe('pipelinable: texts that are not cached', () => {
  it('judges a long text (values inline) as a short one', () => {
    const values = Array.from({ length: 600 }, (_, i) => `(${i})`).join(', ')
    expect(values.length).toBeGreaterThan(2_000)
    expect(pipelinable(`INSERT INTO t VALUES ${values}`)).toBe(true)
    expect(pipelinable(`INSERT INTO t VALUES ${values}; BEGIN`)).toBe(false)
  })

  it('keeps judging right after more distinct texts than it caches', () => {
    for (let i = 0; i < 2_500; i++) {
      expect(pipelinable(`SELECT ${i}`)).toBe(true)
      expect(pipelinable(`SELECT ${i}; BEGIN`)).toBe(false)
    }
    expect(pipelinable('SELECT 0')).toBe(true)
    expect(pipelinable('SELECT 0; BEGIN')).toBe(false)
  })
})

describe('pipelinable: regressions', () => {
  it('regression: a run of blanks before what cannot be shared is refused in linear time (the event loop froze for seconds)', () => {
    // Unique texts, so that no cached verdict answers. With `\s+` inside the patterns' `*`, each
    // of these took 2^24 steps before it failed (seconds in all); now microseconds.
    const blanks = ' \t'.repeat(12)
    const texts = [`${blanks}(SELECT 1)`, `SELECT 1;${blanks}SELECT 2`, `SELECT 1; ${blanks}x`]
    const started = performance.now()
    for (const text of texts) expect(pipelinable(text)).toBe(false)
    expect(performance.now() - started).toBeLessThan(250)
    // The same shapes that can be shared still are, even very long.
    const long = ' \n'.repeat(100_000)
    const at = performance.now()
    expect(pipelinable(`${long}SELECT 1;${long}-- done${long}`)).toBe(true)
    expect(pipelinable(`${long}SELECT 1;${long}x`)).toBe(false)
    expect(performance.now() - at).toBeLessThan(1_000)
  })

  it('regression: a nested block comment or a line comment ended by a carriage return no longer hides a statement (BEGIN ran on a shared connection)', () => {
    // PostgreSQL nests block comments and ends a line comment at \r: each of these leaves a
    // transaction open (checked on PostgreSQL 15), though the old patterns read one SELECT.
    expect(pipelinable('SELECT 1; /* /* */ -- */ BEGIN')).toBe(false)
    expect(pipelinable('/* /* */ SELECT */ BEGIN')).toBe(false)
    expect(pipelinable('SELECT 1; -- note\rBEGIN')).toBe(false)
    // Comments that PostgreSQL and the classifier read alike still pass.
    expect(pipelinable('-- note\r\nSELECT 1')).toBe(true)
    expect(pipelinable('SELECT 1; -- note\r\n')).toBe(true)
    expect(pipelinable('/* a * b / c **/ SELECT 1 /* x */;')).toBe(true)
    expect(pipelinable('/*/ odd but closed */ SELECT 1')).toBe(true)
  })
})
