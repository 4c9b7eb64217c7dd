/**
 * Names the connection type of `req.db`, `request.db` and `c.var.db`, which the frameworks'
 * typings must fix once for the whole app. Augment it with your driver's connection:
 *
 * @example
 * ```ts
 * import type { Client } from 'pg'
 * declare module 'lifeguard' {
 *   interface ScopedConnectionTypes {
 *     connection: Client
 *   }
 * }
 * ```
 */
// biome-ignore lint/suspicious/noEmptyInterface: an empty interface is what users augment.
export interface ScopedConnectionTypes {}

/** The connection type of `req.db`: the augmented {@link ScopedConnectionTypes}, else `any`. */
export type ScopedConnection = ScopedConnectionTypes extends { connection: infer C } ? C : any
