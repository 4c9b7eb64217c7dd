/**
 * Runs a driver's connect under the pool's `signal`: on abort it tears the half-open connection
 * down (`destroy`) and rejects with the signal's reason at once, without waiting for the driver;
 * on the driver's failure it tears it down too and rejects with the error passed through
 * `redact`, so that no credential leaves the dialect. A signal already aborted starts nothing.
 * A later settlement of `attempt` (after an abort) is absorbed, never an unhandled rejection.
 */
export function connectAbortable<T>(
  signal: AbortSignal,
  attempt: () => Promise<T>,
  destroy: () => void,
  redact: (error: unknown) => unknown,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      destroy()
      reject(signal.reason)
    }
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    let started: Promise<T>
    try {
      started = attempt()
    } catch (error) {
      started = Promise.reject(error)
    }
    started.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        destroy()
        reject(redact(error))
      },
    )
  })
}
