/** A socket, as far as the dialects tear it down. */
export interface Destroyable {
  destroyed?: boolean
  destroy(error?: Error): void
}

/**
 * Tears a connection's sockets down at once: the current one and, after a TLS upgrade, the plain
 * one under it (pg and mysql2 both replace the socket they started with). It never throws, since
 * it runs inside a failed connect's rejection handler, and a user's `stream` option may return
 * something that is not a socket.
 */
export function destroySockets(
  current: Destroyable | undefined,
  plain: Destroyable | undefined,
): void {
  if (typeof current?.destroy === 'function') current.destroy()
  if (plain !== undefined && plain !== current && typeof plain.destroy === 'function') {
    plain.destroy()
  }
}

/**
 * How long {@link closeGracefully} waits for the server to close the socket after the protocol's
 * goodbye (PostgreSQL's Terminate, MySQL's COM_QUIT) before it destroys the socket itself.
 */
const CLOSE_GRACE_MS = 2_000

/**
 * Closes a connection politely, within bounds: `goodbye` sends the protocol's farewell and calls
 * `done` once the socket is closed; if that takes longer than {@link CLOSE_GRACE_MS}, if the
 * pool aborts `signal`, or if `goodbye` throws, `destroy` tears the socket down at once. It never
 * rejects: a dead connection closes as quietly as a live one.
 */
export function closeGracefully(
  goodbye: (done: () => void) => void,
  destroy: () => void,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise<void>((resolve) => {
    let settled = false
    const finish = (teardown: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      if (teardown) destroy()
      resolve()
    }
    const onAbort = () => finish(true)
    const timer = setTimeout(onAbort, CLOSE_GRACE_MS)
    timer.unref()
    if (signal?.aborted === true) return onAbort()
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      goodbye(() => finish(false))
    } catch {
      finish(true)
    }
  })
}

/**
 * The message of the error a dialect's `reset` throws for a connection released with a query
 * still running, so that the pool closes it instead of lending it again.
 */
export const RELEASED_BUSY =
  'released with a query still running: the connection is closed, not lent again'

/**
 * An `'error'` listener that does nothing: it keeps an error of an idle connection from becoming
 * an uncaught exception; the dialect's `watch` reports the death.
 */
export function ignoreError(): void {}
