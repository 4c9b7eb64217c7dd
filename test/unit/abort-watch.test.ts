import { describe, expect, it, vi } from 'vitest'
import { watchAbort } from '../../src/core/abort-watch.js'

describe('watchAbort', () => {
  it('calls each watch once, in the order they began, with one listener on the signal', () => {
    const controller = new AbortController()
    const add = vi.spyOn(controller.signal, 'addEventListener')
    const calls: string[] = []
    for (const name of ['a', 'b', 'c']) watchAbort(controller.signal, () => calls.push(name))
    expect(add).toHaveBeenCalledTimes(1)
    controller.abort()
    controller.abort()
    expect(calls).toEqual(['a', 'b', 'c'])
  })

  it('an ended watch is not called; the listener goes with the last watch, and comes back for a new one', () => {
    const controller = new AbortController()
    const remove = vi.spyOn(controller.signal, 'removeEventListener')
    const calls: string[] = []
    const endA = watchAbort(controller.signal, () => calls.push('a'))
    const endB = watchAbort(controller.signal, () => calls.push('b'))
    endA()
    endA()
    expect(remove).not.toHaveBeenCalled()
    endB()
    expect(remove).toHaveBeenCalledTimes(1)
    watchAbort(controller.signal, () => calls.push('c'))
    controller.abort()
    expect(calls).toEqual(['c'])
  })

  it('a watch that an earlier callback ends during the abort is not called', () => {
    const controller = new AbortController()
    const calls: string[] = []
    let endB = () => {}
    watchAbort(controller.signal, () => {
      calls.push('a')
      endB()
    })
    endB = watchAbort(controller.signal, () => calls.push('b'))
    watchAbort(controller.signal, () => calls.push('c'))
    controller.abort()
    expect(calls).toEqual(['a', 'c'])
  })

  it('one function watching twice is two watches, each ended on its own', () => {
    const controller = new AbortController()
    let calls = 0
    const onAbort = () => calls++
    const first = watchAbort(controller.signal, onAbort)
    watchAbort(controller.signal, onAbort)
    first()
    controller.abort()
    expect(calls).toBe(1)
  })

  it('ending a watch after the abort is harmless', () => {
    const controller = new AbortController()
    let calls = 0
    const end = watchAbort(controller.signal, () => calls++)
    controller.abort()
    end()
    expect(calls).toBe(1)
  })
})
