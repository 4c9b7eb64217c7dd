import { abortable } from './abortable.js'
import type { Dialect, ServerRole } from './dialect.js'
import { WrongRoleError } from './errors.js'
import type { TargetSessionAttrs } from './pool-options.js'

/** Whether a server in `role` serves a pool that asks for `target` (libpq's rules). */
export function roleFits(role: ServerRole, target: TargetSessionAttrs): boolean {
  if (target === 'any') return true
  return target === 'read-write' ? role === 'read-write' : role !== 'read-write'
}

/**
 * Checks, before a new connection is lent, that its server has the role `targetSessionAttrs`
 * asks for: throws `WrongRoleError` when it has not (the pool then closes the connection and
 * retries the connect with backoff), and whatever `role()` threw when it could not tell (a
 * connect that failed: the same retry). Does nothing for `'any'`.
 */
export async function checkSessionRole<C>(
  dialect: Dialect<C>,
  connection: C,
  target: TargetSessionAttrs,
  signal: AbortSignal,
): Promise<void> {
  if (target === 'any') return
  const role = await abortable(dialect.role!(connection, signal), signal)
  if (roleFits(role, target)) return
  const what = role === 'standby' ? 'a hot standby' : `${role}`
  throw new WrongRoleError(
    `the ${dialect.name} server is ${what}, and targetSessionAttrs is '${target}': the connection was closed, and the pool connects again with backoff`,
    role,
    target,
  )
}
