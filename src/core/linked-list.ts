/** A node of a {@link LinkedList}: the list keeps its links on the item itself. */
export interface ListNode<T> {
  prev: T | undefined
  next: T | undefined
  /** The list the node is in, so that a removal from the wrong list is a no-op. */
  list: object | undefined
}

/**
 * An intrusive doubly-linked list: O(1) push and pop at both ends and O(1) removal of any
 * node, with no allocation. The pool's idle list and waiter queue are both made of it, because
 * `Array.shift` is O(n) and a waiter that aborts must leave the middle of the queue.
 */
export class LinkedList<T extends ListNode<T>> {
  #head: T | undefined
  #tail: T | undefined
  #size = 0

  /** How many nodes the list holds. */
  get size(): number {
    return this.#size
  }

  /** The first node, or `undefined`. */
  get head(): T | undefined {
    return this.#head
  }

  /** The last node, or `undefined`. */
  get tail(): T | undefined {
    return this.#tail
  }

  /** Appends a node at the tail. */
  push(node: T): void {
    node.list = this
    node.next = undefined
    node.prev = this.#tail
    if (this.#tail === undefined) this.#head = node
    else this.#tail.next = node
    this.#tail = node
    this.#size++
  }

  /** Inserts a node at the head. */
  unshift(node: T): void {
    node.list = this
    node.prev = undefined
    node.next = this.#head
    if (this.#head === undefined) this.#tail = node
    else this.#head.prev = node
    this.#head = node
    this.#size++
  }

  /** Removes and returns the head, or `undefined`. */
  shift(): T | undefined {
    const node = this.#head
    if (node !== undefined) this.remove(node)
    return node
  }

  /** Removes a node; a node that is not in this list is left alone. Returns whether it was. */
  remove(node: T): boolean {
    if (node.list !== this) return false
    if (node.prev === undefined) this.#head = node.next
    else node.prev.next = node.next
    if (node.next === undefined) this.#tail = node.prev
    else node.next.prev = node.prev
    node.prev = undefined
    node.next = undefined
    node.list = undefined
    this.#size--
    return true
  }

  /** Iterates from head to tail; removing the current node while iterating is safe. */
  *[Symbol.iterator](): IterableIterator<T> {
    let node = this.#head
    while (node !== undefined) {
      const next = node.next
      yield node
      node = next
    }
  }
}
