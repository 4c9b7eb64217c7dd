/**
 * Runs `task` with an `AbortSignal` that aborts after `ms`, and rejects with `onTimeout()` at
 * that moment even if the task ignores its signal: a dialect call must never hang the pool.
 */
export function withTimeout<T>(
  task: (signal: AbortSignal) => PromiseLike<T> | T,
  ms: number,
  onTimeout: () => Error,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const controller = new AbortController()
    const timer = setTimeout(() => {
      const error = onTimeout()
      controller.abort(error)
      reject(error)
    }, ms)
    const settle = (fn: () => void) => {
      clearTimeout(timer)
      fn()
    }
    try {
      Promise.resolve(task(controller.signal)).then(
        (value) => settle(() => resolve(value)),
        (error) => settle(() => reject(error)),
      )
    } catch (error) {
      settle(() => reject(error))
    }
  })
}
