import { describe, expect, it, vi } from 'vitest'
import { abortable } from '../../src/core/abortable.js'

describe('abortable: give up on a promise when a signal aborts', () => {
  it('settles with the promise when the signal does not abort', async () => {
    const controller = new AbortController()
    await expect(abortable(Promise.resolve(1), controller.signal)).resolves.toBe(1)
    await expect(abortable(Promise.reject(new Error('no')), controller.signal)).rejects.toThrow(
      'no',
    )
  })

  it('rejects with the reason at the abort, and hands what arrives late to onLate', async () => {
    const controller = new AbortController()
    let arrive!: (value: string) => void
    const late = vi.fn()
    const pending = abortable(
      new Promise<string>((resolve) => {
        arrive = resolve
      }),
      controller.signal,
      late,
    )
    const reason = new Error('timed out')
    controller.abort(reason)
    await expect(pending).rejects.toBe(reason)
    arrive('connection')
    await new Promise((resolve) => setImmediate(resolve))
    expect(late).toHaveBeenCalledWith('connection')
  })

  it('rejects at once on a signal already aborted, and leaves no unhandled rejection', async () => {
    const unhandled = vi.fn()
    process.on('unhandledRejection', unhandled)
    try {
      const reason = new Error('already')
      await expect(
        abortable(Promise.reject(new Error('late failure')), AbortSignal.abort(reason)),
      ).rejects.toBe(reason)
      await new Promise((resolve) => setImmediate(resolve))
      expect(unhandled).not.toHaveBeenCalled()
    } finally {
      process.off('unhandledRejection', unhandled)
    }
  })
})
