import type { Dialect, ResetMode, ServerInfo, TransactionStep } from '../../src/index.js'

/** A connection of the fake dialect: a plain object with an id and flags the tests can flip. */
export interface FakeConnection {
  readonly id: number
  open: boolean
  /** The server "killed" it: pings and queries fail with a disconnect. */
  dead: boolean
  /** Set by a test to simulate an open transaction that the reset must undo. */
  inTransaction: boolean
  resets: ResetMode[]
  /** The transaction statements the pool ran on it, in order (`transact`). */
  steps: TransactionStep[]
}

/** The error the fake dialect calls a disconnect. */
export class FakeDisconnect extends Error {
  readonly code = 'FAKE_DISCONNECT'
}

type Step = { ms: number; fail?: Error | undefined }

/** How the fake dialect's `pipeline()` hook answers, once a test installed it (`enablePipeline`). */
export interface FakePipelineOptions {
  /** Connections this returns true for cannot pipeline: `pipeline(connection, true)` returns false. */
  refuse?: (connection: FakeConnection) => boolean
}

/** Runs `fn` after `ms` on the (fake) clock, or in a microtask when `ms` is 0, so that a test can await it without moving the clock. */
function later(fn: () => void, ms: number): () => void {
  if (ms <= 0) {
    let cancelled = false
    queueMicrotask(() => {
      if (!cancelled) fn()
    })
    return () => {
      cancelled = true
    }
  }
  const timer = setTimeout(fn, ms)
  return () => clearTimeout(timer)
}

/**
 * A scriptable in-memory dialect for the core's unit tests: connects after a delay (or fails),
 * pings, resets, and lets a test kill connections and watch what the pool does. With fake
 * timers, nothing here sleeps for real.
 */
export class FakeDialect implements Dialect<FakeConnection> {
  readonly name = 'fake'
  /** Every connection ever opened. */
  readonly all: FakeConnection[] = []
  connectDelay = 0
  /** When set, every connect fails with this error (after `connectDelay`). */
  connectError: Error | undefined
  /** When true, connects never settle (a blackhole) unless aborted. */
  hang = false
  /** Scripted outcomes for the next connects, consumed in order before the defaults apply. */
  readonly script: Step[] = []
  pingDelay = 0
  resetDelay = 0
  /** When set, resets reject with it. */
  resetError: Error | undefined
  /** When true, reset() answers synchronously for connections with no open transaction. */
  syncReset = true
  /** When set, the transaction step it names rejects with this error. */
  stepError: { step: TransactionStep; error: Error } | undefined
  /** What inspect() reports of the "server"; undefined leaves inspect out. */
  server: ServerInfo | undefined
  connects = 0
  pings = 0
  closes = 0
  /** The connections closed with an aborted signal: torn down without a goodbye. */
  readonly tornDown: FakeConnection[] = []
  /**
   * What the pool did, in order, once a test called {@link FakeDialect.enablePipeline}: each
   * `pipeline` call, reset and close, as `pipeline #1 on`, `pipeline #1 off`, `reset #1`, `close #1`.
   */
  readonly log: string[] = []
  /**
   * The pipelining hook: absent unless a test calls {@link FakeDialect.enablePipeline}, so that
   * every other test's pool never shares a connection (the pool reads it once, when made).
   */
  declare pipeline?: (connection: FakeConnection, on: boolean) => boolean
  readonly #pipelineCalls = new Map<FakeConnection, boolean[]>()
  readonly #watchers = new Map<FakeConnection, (error?: unknown) => void>()

  /** Connections that are open now. */
  get open(): FakeConnection[] {
    return this.all.filter((c) => c.open)
  }

  connect(signal: AbortSignal): Promise<FakeConnection> {
    this.connects++
    const step = this.script.shift() ?? { ms: this.connectDelay, fail: this.connectError }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        cancel()
        reject(signal.reason)
      }
      if (signal.aborted) return reject(signal.reason)
      signal.addEventListener('abort', onAbort, { once: true })
      let cancel = () => {}
      if (this.hang && step.fail === undefined) return
      cancel = later(() => {
        signal.removeEventListener('abort', onAbort)
        if (step.fail !== undefined) return reject(step.fail)
        const connection: FakeConnection = {
          id: this.all.length + 1,
          open: true,
          dead: false,
          inTransaction: false,
          resets: [],
          steps: [],
        }
        this.all.push(connection)
        resolve(connection)
      }, step.ms)
    })
  }

  /**
   * Gives this dialect a `pipeline(connection, on)` method, to be called before the pool is
   * made. It records each call (see {@link FakeDialect.pipelineCalls} and `log`) and returns
   * whether the connection pipelines now: `on`, unless `refuse` names the connection.
   */
  enablePipeline(options: FakePipelineOptions = {}): this {
    const refuse = options.refuse ?? (() => false)
    this.pipeline = (connection, on) => {
      const calls = this.#pipelineCalls.get(connection) ?? []
      calls.push(on)
      this.#pipelineCalls.set(connection, calls)
      this.log.push(`pipeline #${connection.id} ${on ? 'on' : 'off'}`)
      return on && !refuse(connection)
    }
    return this
  }

  /** The `on` argument of each `pipeline()` call the pool made for `connection`, in order. */
  pipelineCalls(connection: FakeConnection): boolean[] {
    return [...(this.#pipelineCalls.get(connection) ?? [])]
  }

  async close(connection: FakeConnection, signal?: AbortSignal): Promise<void> {
    this.closes++
    if (this.pipeline !== undefined) this.log.push(`close #${connection.id}`)
    if (signal?.aborted === true) this.tornDown.push(connection)
    connection.open = false
    this.#watchers.delete(connection)
  }

  ping(connection: FakeConnection): Promise<void> {
    this.pings++
    return new Promise((resolve, reject) => {
      later(() => {
        if (connection.dead || !connection.open) reject(new FakeDisconnect('connection is dead'))
        else resolve()
      }, this.pingDelay)
    })
  }

  reset(connection: FakeConnection, mode: ResetMode): Promise<void> | undefined {
    if (this.pipeline !== undefined) this.log.push(`reset #${connection.id}`)
    if (this.syncReset && !connection.inTransaction && mode === 'rollback' && !this.resetError) {
      return undefined
    }
    return new Promise((resolve, reject) => {
      later(() => {
        if (this.resetError !== undefined) return reject(this.resetError)
        if (connection.dead) return reject(new FakeDisconnect('connection is dead'))
        connection.inTransaction = false
        connection.resets.push(mode)
        resolve()
      }, this.resetDelay)
    })
  }

  transact(connection: FakeConnection, step: TransactionStep): Promise<void> {
    return new Promise((resolve, reject) => {
      later(() => {
        if (connection.dead) return reject(new FakeDisconnect('connection is dead'))
        connection.steps.push(step)
        connection.inTransaction = step === 'begin'
        if (this.stepError?.step === step) return reject(this.stepError.error)
        resolve()
      }, 0)
    })
  }

  inTransaction(connection: FakeConnection): boolean {
    return connection.inTransaction
  }

  get inspect(): Dialect<FakeConnection>['inspect'] {
    const server = this.server
    return server === undefined ? undefined : async () => server
  }

  isDisconnect(error: unknown): boolean {
    return error instanceof FakeDisconnect
  }

  watch(connection: FakeConnection, onDeath: (error?: unknown) => void): void {
    this.#watchers.set(connection, onDeath)
  }

  /** The server kills a connection: it is dead, and the driver reports it as an idle client would. */
  kill(connection: FakeConnection): void {
    connection.dead = true
    this.#watchers.get(connection)?.(new FakeDisconnect('terminated by the server'))
  }

  /** Kills a connection silently: only a ping or a query finds out. */
  killSilently(connection: FakeConnection): void {
    connection.dead = true
  }
}
