import { describe, expect, it } from 'vitest'
import { mayOpenTransaction } from '../../src/dialects/mysql-statement-classifier.js'

// [sql, may it leave a transaction open in autocommit mode?]
type Case = readonly [string, boolean]

/** Runs one table: each row is its own test, named by its SQL. */
function table(cases: readonly Case[]): void {
  it.each(cases.map(([sql, open]) => ({ sql, open })))('$sql → $open', ({ sql, open }) => {
    expect(mayOpenTransaction(sql)).toBe(open)
  })
}

describe('mayOpenTransaction: the MySQL statement classifier', () => {
  describe('statements that commit themselves in autocommit mode', () => {
    table([
      ['SELECT 1', false],
      ['select * from t where id = 1', false],
      ['SeLeCt 1', false],
      ['SELECT * FROM t FOR UPDATE', false],
      ['SHOW TABLES', false],
      ['DESCRIBE t', false],
      ['DESC t', false],
      ['EXPLAIN SELECT 1', false],
      ['DO SLEEP(0)', false],
      ['INSERT INTO t VALUES (1)', false],
      ["INSERT INTO t SET note = 'start transaction'", false],
      ['UPDATE t SET autocommit_flag = 0', false],
      ['DELETE FROM t', false],
      ['REPLACE INTO t VALUES (1)', false],
      ['WITH a AS (SELECT 1) SELECT * FROM a', false],
      ['TABLE t', false],
      ['VALUES ROW(1)', false],
      ['(SELECT 1)', false],
      ['( SELECT 1 ) UNION ( SELECT 2 )', false],
    ])
  })

  describe('whitespace, comments and one trailing semicolon', () => {
    table([
      ['   SELECT 1', false],
      ['\n\t SELECT 1', false],
      ['SELECT 1;', false],
      ['SELECT 1 ;  \n', false],
      ['/* a comment */ SELECT 1', false],
      ['/* one */ /* two\n lines */SELECT 1', false],
      ['/* a comment */ BEGIN', true],
      ['/* unterminated SELECT 1', true],
      // Line comments are not skipped: counted as possibly opening (costs a ROLLBACK, no more).
      ['-- a comment\nSELECT 1', true],
      ['# a comment\nSELECT 1', true],
      ['', true],
      ['   ', true],
    ])
  })

  describe('several statements: a ; anywhere but at the end', () => {
    table([
      ['SELECT 1; BEGIN', true],
      ['SELECT 1; SELECT 2', true],
      ['SELECT 1;;', true],
      ["SELECT ';'", true],
      ['INSERT INTO t VALUES (1); START TRANSACTION;', true],
    ])
  })

  describe('transaction control', () => {
    table([
      ['BEGIN', true],
      ['begin work', true],
      ['BEGIN;', true],
      ['START TRANSACTION', true],
      ['start transaction read only', true],
      ['START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE', true],
      ['COMMIT', true],
      ['COMMIT AND CHAIN', true],
      ['COMMIT WORK RELEASE', true],
      ['ROLLBACK', true],
      ['ROLLBACK AND CHAIN', true],
      ['ROLLBACK RELEASE', true],
      ['SAVEPOINT a', true],
      ['ROLLBACK TO SAVEPOINT a', true],
      ['RELEASE SAVEPOINT a', true],
      ["XA START 'x'", true],
      ["XA BEGIN 'x'", true],
      ["XA END 'x'", true],
      // MariaDB's compound statement.
      ['BEGIN NOT ATOMIC SELECT 1; END', true],
    ])
  })

  describe('SET: harmless unless it names autocommit, transaction or completion_type', () => {
    table([
      ["SET NAMES 'utf8mb4'", false],
      ['SET @x = 1', false],
      ["SET SESSION sql_mode = 'ANSI'", false],
      ['SET time_zone = "+00:00"', false],
      ['SET @@SESSION.wait_timeout = 60', false],
      ['set character set utf8mb4', false],
      // transaction_isolation is one word: it opens nothing.
      ["SET transaction_isolation = 'READ-COMMITTED'", false],
      ['SET autocommit = 0', true],
      ['SET autocommit=1', true],
      ['SET AUTOCOMMIT = OFF', true],
      ['SET @@autocommit = 0', true],
      ['SET @@SESSION.autocommit = 0', true],
      ['SET SESSION autocommit = 0', true],
      ['SET /* why */ autocommit = 0', true],
      ['SET\nautocommit = 0', true],
      ['SET @x = 1, autocommit = 0', true],
      ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', true],
      ['SET SESSION TRANSACTION READ ONLY', true],
      ["SET completion_type = 'CHAIN'", true],
      ['SET @@completion_type = 1', true],
    ])
  })

  describe('statements that open, hold or end transactions by other means', () => {
    table([
      ['CALL p()', true],
      ['LOCK TABLES t WRITE', true],
      ['UNLOCK TABLES', true],
      ['LOCK TABLE t READ', true],
      ['HANDLER t OPEN', true],
      ["LOAD DATA INFILE 'f' INTO TABLE t", true],
      ['PREPARE s FROM "BEGIN"', true],
      ['EXECUTE s', true],
      // DDL commits implicitly and opens nothing, but the classifier does not list it.
      ['CREATE TABLE t (id int)', true],
      ['DROP TABLE t', true],
      ['ALTER TABLE t ADD COLUMN c int', true],
      ['TRUNCATE TABLE t', true],
      ['USE test', true],
      ['KILL QUERY 12', true],
    ])
  })

  describe('words that begin like a harmless keyword', () => {
    table([
      ['DELIMITER //', true],
      ['DOUBLE', true],
      ['SETX = 1', true],
      ['TABLES', true],
      ['SELECTED', true],
    ])
  })

  it("regression: MariaDB's SET STATEMENT … FOR BEGIN counted as a harmless SET", () => {
    // SET STATEMENT var = value FOR <statement> runs the statement after FOR: on MariaDB this
    // opens a transaction, and a release that trusted the classifier sent no ROLLBACK.
    expect(mayOpenTransaction('SET STATEMENT max_statement_time = 1 FOR BEGIN')).toBe(true)
    expect(mayOpenTransaction("SET STATEMENT sql_mode = '' FOR XA START 'x'")).toBe(true)
    expect(mayOpenTransaction('set statement max_statement_time=1 for call p()')).toBe(true)
    expect(mayOpenTransaction('SET STATEMENT max_statement_time = 1 FOR SELECT 1')).toBe(true)
  })
})
