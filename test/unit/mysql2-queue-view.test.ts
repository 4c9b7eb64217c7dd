import { describe, expect, it } from 'vitest'
import { Mysql2QueueView } from '../../src/compat/mysql2-queue-view.js'

describe("Mysql2QueueView: mysql2's queue shape over live state", () => {
  it('reads the items afresh on every access, with RingQueue-style indexing', () => {
    const items = ['a', 'b']
    const view = new Mysql2QueueView('pool._freeConnections', () => items)
    expect([view.length, view.size(), view.isEmpty()]).toEqual([2, 2, false])
    items.push('c')
    expect(view.length).toBe(3)
    expect([view.get(0), view.peekAt(-1), view.peek(), view.peekFront(), view.peekBack()]).toEqual([
      'a',
      'c',
      'a',
      'a',
      'c',
    ])
    expect([view.get(3), view.get(-4), view.get(1.5)]).toEqual([undefined, undefined, undefined])
    const copy = view.toArray()
    copy.pop()
    expect([...view]).toEqual(['a', 'b', 'c'])
    items.length = 0
    expect([view.length, view.isEmpty(), view.peek()]).toEqual([0, true, undefined])
  })

  it('refuses every write, naming the field and the method', () => {
    const view = new Mysql2QueueView('pool._allConnections', () => [1])
    const writes: Array<[string, () => unknown]> = [
      ['push', () => view.push(2)],
      ['unshift', () => view.unshift(2)],
      ['shift', () => view.shift()],
      ['pop', () => view.pop()],
      ['removeOne', () => view.removeOne(0)],
      ['remove', () => view.remove(0, 1)],
      ['splice', () => view.splice(0, 1)],
      ['clear', () => view.clear()],
    ]
    for (const [method, write] of writes) {
      expect(write).toThrow(
        new RegExp(`^pool\\._allConnections\\.${method}\\(\\): this is a read-only view`),
      )
    }
    expect(view.length).toBe(1)
  })
})
