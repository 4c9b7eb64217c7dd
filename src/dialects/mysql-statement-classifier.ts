/**
 * A statement that cannot leave a transaction open in autocommit mode: one statement that only
 * reads or changes rows (in autocommit mode it commits itself; a stored function or trigger may
 * not start or end a transaction), or a SET that names neither `autocommit`, `transaction` nor
 * `completion_type`. Leading block comments, a leading `(` and one trailing `;` are allowed.
 * MariaDB's `SET STATEMENT … FOR <statement>` runs the statement after FOR (`SET STATEMENT
 * max_statement_time = 1 FOR BEGIN` opens a transaction), so it is not counted as a SET.
 */
const AUTOCOMMITTED =
  /^\s*(?:\/\*[\s\S]*?\*\/\s*)*\(?\s*(?:select|show|describe|desc|explain|do|insert|update|delete|replace|with|table|values|set\b(?!\s+statement\b)(?![^;]*\b(?:autocommit|transaction|completion_type)\b))\b[^;]*;?\s*$/i

/**
 * Whether `sql` may leave a transaction open on a MySQL or MariaDB session in autocommit mode.
 * It errs towards `true`: anything it does not recognise as harmless (BEGIN, START TRANSACTION,
 * SET autocommit, XA, CALL, LOCK TABLES, DDL, a line comment, a `;` anywhere but at the end,
 * which may separate several statements) counts as possibly opening one, which costs only a
 * ROLLBACK on release. A wrong `false` would lend the next borrower an open transaction.
 */
export function mayOpenTransaction(sql: string): boolean {
  return !AUTOCOMMITTED.test(sql)
}
