/** A promise's outcome, filled in when it settles; `done` stays false while it is pending. */
export interface Settled<T> {
  value?: T
  error?: unknown
  done: boolean
  /** When it settled, in `performance.now()` time; `NaN` while pending. */
  at: number
}

/** Settles a promise without throwing, to inspect it later (fake-clock tests step time meanwhile). */
export function settle<T>(promise: Promise<T>): Settled<T> {
  const out: Settled<T> = { done: false, at: Number.NaN }
  promise.then(
    (value) => {
      out.value = value
      out.done = true
      out.at = performance.now()
    },
    (error) => {
      out.error = error
      out.done = true
      out.at = performance.now()
    },
  )
  return out
}

/** Whether `promise` is still pending after `ms` of real time (it rejects if `promise` does first). */
export async function pendingAfter(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const later = Symbol('pending')
  const first = await Promise.race([
    promise,
    new Promise((resolve) => setTimeout(() => resolve(later), ms)),
  ])
  return first === later
}
