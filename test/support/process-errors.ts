/**
 * Counts what would crash or taint a process: unhandled rejections and uncaught exceptions (an
 * EventEmitter 'error' with no listener ends up as one). Call `stop()` before asserting.
 */
export function trackProcessErrors(): { readonly errors: unknown[]; stop(): void } {
  const errors: unknown[] = []
  const onError = (error: unknown) => errors.push(error)
  process.on('unhandledRejection', onError)
  process.on('uncaughtException', onError)
  return {
    errors,
    stop() {
      process.off('unhandledRejection', onError)
      process.off('uncaughtException', onError)
    },
  }
}
