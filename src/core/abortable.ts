/**
 * Settles with `promise`, or rejects with the signal's reason when `signal` aborts first. What
 * `promise` brings after the abort is handed to `onLate` (a late connection is closed, so a
 * timed-out connect never leaks one), or else dropped without an unhandled rejection.
 */
export function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  onLate?: (late: T) => void,
): Promise<T> {
  const abandon = () => {
    if (onLate !== undefined) promise.then(onLate, () => {})
    else promise.catch(() => {})
  }
  if (signal.aborted) {
    abandon()
    return Promise.reject(signal.reason)
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      abandon()
      reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error) => {
        signal.removeEventListener('abort', onAbort)
        reject(error)
      },
    )
  })
}
