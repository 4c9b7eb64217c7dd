/** The callbacks watching one signal, and the one listener that calls them. */
interface Watchers {
  readonly callbacks: Set<() => void>
  readonly listener: () => void
}

const watched = new WeakMap<AbortSignal, Watchers>()

/**
 * Calls `onAbort` once when `signal` aborts, until the returned function is called. However many
 * waits watch one signal, the signal carries one `'abort'` listener: a caller who passes one
 * signal to many acquires at once (a request's, a shutdown's) would otherwise pass Node's limit of
 * ten and get a "possible EventTarget memory leak" warning for a leak that is not there. The
 * listener goes once the last watch ends, so a long-lived signal keeps nothing of finished waits.
 *
 * `signal` must not be aborted yet (the callers reject at once when it is). The callbacks run in
 * the order they were added, as the signal's own listeners would.
 */
export function watchAbort(signal: AbortSignal, onAbort: () => void): () => void {
  let watchers = watched.get(signal)
  if (watchers === undefined) {
    const callbacks = new Set<() => void>()
    const listener = () => {
      watched.delete(signal)
      // A watch one of these callbacks ends (a waiter served meanwhile) is not called.
      for (const callback of [...callbacks]) {
        if (callbacks.delete(callback)) callback()
      }
    }
    watchers = { callbacks, listener }
    watched.set(signal, watchers)
    signal.addEventListener('abort', listener, { once: true })
  }
  const { callbacks, listener } = watchers
  // A callback of its own, so that one function watching twice is two watches.
  const callback = () => onAbort()
  callbacks.add(callback)
  return () => {
    if (!callbacks.delete(callback) || callbacks.size > 0) return
    if (watched.get(signal)?.callbacks === callbacks) watched.delete(signal)
    signal.removeEventListener('abort', listener)
  }
}
