import net from 'node:net'

/**
 * The faults applied to one direction of every link, switchable at run time (Toxiproxy's
 * toxics, in plain Node). "upstream" is client → server, "downstream" server → client.
 */
export interface DirectionFaults {
  /** Added to every chunk, in ms; order is kept, so a chunk never overtakes the one before. */
  latencyMs: number
  /** Each chunk's latency varies uniformly by ± this, in ms. */
  jitterMs: number
  /** Drop every byte: the link stays open but nothing arrives (Toxiproxy's `timeout`, ms=0). */
  blackhole: boolean
  /** After this many bytes in this direction, close the link gracefully (Toxiproxy's `limit_data`). */
  closeAfterBytes: number | undefined
  /** After this many bytes in this direction, reset the client with an RST (`reset_peer`). */
  resetAfterBytes: number | undefined
  /** Write each chunk one byte at a time, each byte its own write (Toxiproxy's `slicer`). */
  slice: boolean
  /** At most this many bytes per second, or `undefined` for no cap (Toxiproxy's `bandwidth`). */
  bytesPerSecond: number | undefined
}

/** How the listener treats a new connection. */
export type AcceptMode =
  /** Connect to the server and forward, applying the direction faults. */
  | 'forward'
  /** Stop listening: a new connection is refused (ECONNREFUSED). */
  | 'refuse'
  /** Accept, never connect upstream, never answer: a handshake hangs until someone gives up. */
  | 'blackhole'
  /** Accept, then reset at once with an RST. */
  | 'reset'

const NO_FAULTS: DirectionFaults = {
  latencyMs: 0,
  jitterMs: 0,
  blackhole: false,
  closeAfterBytes: undefined,
  resetAfterBytes: undefined,
  slice: false,
  bytesPerSecond: undefined,
}

/** How long a link may stay half-closed after one side closed cleanly. */
const CLEAN_CLOSE_GRACE_MS = 1_000

/** Above this many queued bytes the reading side is paused, so a slow direction has backpressure. */
const HIGH_WATER = 1 << 20

function sleep(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms))
}

/** Writes and waits until the chunk is handed to the kernel. */
function writeFlushed(socket: net.Socket, chunk: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || !socket.writable) return resolve()
    socket.write(chunk, () => resolve())
  })
}

/** One turn of the event loop, so that a reader in this process sees each slice on its own. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** One client connection and, in forward mode, its server connection. */
class Link {
  readonly client: net.Socket
  server: net.Socket | undefined
  #open = 0
  #piped = false
  readonly #onGone: (link: Link) => void
  #gone = false

  constructor(client: net.Socket, onGone: (link: Link) => void) {
    this.client = client
    this.#onGone = onGone
    this.#track(client)
  }

  attach(server: net.Socket): void {
    this.server = server
    this.#track(server)
  }

  /** Called once data flows both ways: from then on a clean close is passed on by the pipes. */
  piped(): void {
    this.#piped = true
  }

  /** Closes both sides at once (FIN if possible, then destroy). */
  cut(): void {
    this.client.destroy()
    this.server?.destroy()
  }

  /** Sends an RST to the client and drops the server side. */
  reset(): void {
    if (!this.client.destroyed) this.client.resetAndDestroy()
    this.server?.destroy()
  }

  #track(socket: net.Socket): void {
    this.#open++
    socket.on('error', () => {}) // a reset peer is the point of this proxy, not a crash
    socket.once('close', (hadError: boolean) => {
      // A side that failed takes the other down at once. A side that ended cleanly sent its
      // FIN through the pipe, which ends the other side after the data still queued (delayed
      // by latency, say), so a goodbye message is not lost to the proxy.
      const other = socket === this.client ? this.server : this.client
      if (hadError || !this.#piped) other?.destroy()
      // A paused or blackholed pipe may never pass the FIN on: bound the wait.
      else setTimeout(() => other?.destroy(), CLEAN_CLOSE_GRACE_MS).unref()
      if (--this.#open === 0 && !this.#gone) {
        this.#gone = true
        this.#onGone(this)
      }
    })
  }
}

/** Forwards one direction of a link, chunk by chunk, applying that direction's faults. */
class Pipe {
  readonly #queue: Array<{ chunk: Buffer; due: number }> = []
  #queued = 0
  #lastDue = 0
  #bytes = 0
  #draining = false
  readonly #from: net.Socket
  readonly #to: net.Socket
  readonly #link: Link
  readonly #faults: () => DirectionFaults

  constructor(from: net.Socket, to: net.Socket, link: Link, faults: () => DirectionFaults) {
    this.#from = from
    this.#to = to
    this.#link = link
    this.#faults = faults
    from.on('data', (chunk: Buffer) => this.#receive(chunk))
    from.on('end', () => this.#enqueueEnd())
  }

  #receive(chunk: Buffer): void {
    const f = this.#faults()
    if (f.blackhole) return
    let data = chunk
    let after: 'close' | 'reset' | undefined
    const limit = [
      [f.closeAfterBytes, 'close'],
      [f.resetAfterBytes, 'reset'],
    ] as const
    for (const [bytes, what] of limit) {
      if (bytes !== undefined && this.#bytes + data.length >= bytes) {
        data = data.subarray(0, Math.max(0, bytes - this.#bytes))
        after = what
      }
    }
    this.#bytes += data.length
    const jitter = f.jitterMs === 0 ? 0 : (Math.random() * 2 - 1) * f.jitterMs
    const due = Math.max(performance.now() + Math.max(0, f.latencyMs + jitter), this.#lastDue)
    this.#lastDue = due
    if (data.length > 0) this.#push(data, due)
    if (after !== undefined) {
      this.#from.pause()
      this.#push(Buffer.alloc(0), due, after)
    }
  }

  #enqueueEnd(): void {
    // A FIN is delayed like data: otherwise a server that closes without a word (MariaDB's KILL
    // of an idle session) is seen at once, whatever the latency.
    const due = Math.max(performance.now() + Math.max(0, this.#faults().latencyMs), this.#lastDue)
    this.#lastDue = due
    this.#push(Buffer.alloc(0), due, 'end')
  }

  #push(chunk: Buffer, due: number, then?: 'close' | 'reset' | 'end'): void {
    this.#queue.push({ chunk, due })
    if (then !== undefined) (this.#queue.at(-1) as { after?: string }).after = then
    this.#queued += chunk.length
    if (this.#queued > HIGH_WATER) this.#from.pause()
    if (!this.#draining) void this.#drain()
  }

  async #drain(): Promise<void> {
    this.#draining = true
    try {
      while (this.#queue.length > 0) {
        const item = this.#queue.shift() as { chunk: Buffer; due: number; after?: string }
        await sleep(item.due - performance.now())
        const f = this.#faults()
        if (f.bytesPerSecond !== undefined && item.chunk.length > 0) {
          await sleep((item.chunk.length / f.bytesPerSecond) * 1000)
        }
        if (this.#to.destroyed) return
        if (f.slice && item.chunk.length > 1) {
          for (let i = 0; i < item.chunk.length; i++) {
            await writeFlushed(this.#to, item.chunk.subarray(i, i + 1))
            await nextTurn()
          }
        } else if (item.chunk.length > 0) {
          this.#to.write(item.chunk)
        }
        this.#queued -= item.chunk.length
        if (this.#queued <= HIGH_WATER && item.after === undefined) this.#from.resume()
        // Let what went before reach the peer before the FIN or RST.
        // When data and an RST reach Linux together, the reader sees the data and then EOF,
        // not ECONNRESET: give the peer a moment to read first, so a reset looks like one.
        if (item.after !== undefined) {
          await writeFlushed(this.#to, Buffer.alloc(0))
          await sleep(item.after === 'reset' ? 5 : 0)
        }
        if (item.after === 'end') this.#to.end()
        else if (item.after === 'close') this.#link.cut()
        else if (item.after === 'reset') this.#link.reset()
      }
    } finally {
      this.#draining = false
    }
  }
}

/**
 * A TCP proxy in front of a database server on 127.0.0.1 that injects network faults, per
 * direction and switchable while links are live: latency with jitter, a bandwidth cap, 1-byte
 * slices, close or reset after N bytes, blackholes, refusing new connections, cutting or
 * resetting live ones. It counts its live links, so that every test can assert none is left.
 *
 * Written after psycopg's `tests/fix_proxy.py` and mariadb-connector's `test/tools/proxy.js`
 * (cited, not copied), with Toxiproxy's toxics as the vocabulary.
 *
 * @example
 * ```ts
 * const proxy = await FaultProxy.start(5432)
 * proxy.setAccept('refuse') // "server down"
 * proxy.cutAll()
 * proxy.clear() // back up
 * await proxy.close()
 * ```
 */
export class FaultProxy {
  readonly #targetPort: number
  readonly #targetHost: string
  readonly #links = new Set<Link>()
  #server: net.Server
  #port = 0
  #accept: AcceptMode = 'forward'
  #up: DirectionFaults = { ...NO_FAULTS }
  #down: DirectionFaults = { ...NO_FAULTS }
  #accepted = 0
  #closed = false
  readonly #goneWaiters: Array<() => void> = []

  private constructor(targetPort: number, targetHost: string) {
    this.#targetPort = targetPort
    this.#targetHost = targetHost
    this.#server = this.#makeServer()
  }

  /** Starts a proxy on a free port of 127.0.0.1 that forwards to `targetPort`. */
  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<FaultProxy> {
    const proxy = new FaultProxy(targetPort, targetHost)
    await proxy.#listen(0)
    return proxy
  }

  /** The port the pool should connect to. */
  get port(): number {
    return this.#port
  }

  /** Links (client connections, with their server side) not yet fully closed. */
  get liveLinks(): number {
    return this.#links.size
  }

  /** Client connections accepted since start. */
  get accepted(): number {
    return this.#accepted
  }

  /** How new connections are treated; `'refuse'` stops listening, anything else listens again. */
  async setAccept(mode: AcceptMode): Promise<void> {
    const was = this.#accept
    this.#accept = mode
    if (mode === 'refuse' && was !== 'refuse') {
      // close() stops listening at once; its callback would wait for the live links to end.
      this.#server.close()
    } else if (mode !== 'refuse' && was === 'refuse' && !this.#closed) {
      this.#server = this.#makeServer()
      await this.#listen(this.#port)
    }
  }

  /** Changes the faults of one or both directions for live and new links alike. */
  set(faults: {
    upstream?: Partial<DirectionFaults>
    downstream?: Partial<DirectionFaults>
  }): void {
    if (faults.upstream !== undefined) this.#up = { ...this.#up, ...faults.upstream }
    if (faults.downstream !== undefined) this.#down = { ...this.#down, ...faults.downstream }
  }

  /** Sets the same faults on both directions. */
  setBoth(faults: Partial<DirectionFaults>): void {
    this.set({ upstream: faults, downstream: faults })
  }

  /** Removes every fault and accepts again: the network is healthy. */
  async clear(): Promise<void> {
    this.#up = { ...NO_FAULTS }
    this.#down = { ...NO_FAULTS }
    await this.setAccept('forward')
  }

  /** "Server down": refuse new connections, and cut the live ones unless `cut` is false. */
  async down(cut = true): Promise<void> {
    await this.setAccept('refuse')
    if (cut) this.cutAll()
  }

  /** "Server back up". */
  async up(): Promise<void> {
    await this.setAccept('forward')
  }

  /** Blackholes everything: new connections hang, live ones stop forwarding (no FIN, no RST). */
  async blackhole(): Promise<void> {
    await this.setAccept('blackhole')
    this.setBoth({ blackhole: true })
  }

  /** Closes every live link on both sides (the client sees a FIN). */
  cutAll(): void {
    for (const link of this.#links) link.cut()
  }

  /** Resets every live link: the client sees ECONNRESET; the server side is dropped. */
  resetAll(): void {
    for (const link of this.#links) link.reset()
  }

  /** Resolves once no link is live; rejects after `ms` with the count left. */
  async waitForNoLinks(ms = 3_000): Promise<void> {
    if (this.#links.size === 0) return
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      new Promise<void>((resolve) => this.#goneWaiters.push(resolve)),
      new Promise<void>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${this.#links.size} proxy links still live after ${ms} ms`)),
          ms,
        )
      }),
    ]).finally(() => clearTimeout(timer))
  }

  /** Stops listening and cuts every link. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.cutAll()
    if (this.#accept !== 'refuse') this.#server.close()
  }

  #makeServer(): net.Server {
    const server = net.createServer({ noDelay: true }, (client) => this.#onConnection(client))
    server.on('error', () => {})
    return server
  }

  #listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(port, '127.0.0.1', () => {
        this.#server.off('error', reject)
        this.#port = (this.#server.address() as net.AddressInfo).port
        resolve()
      })
    })
  }

  #onConnection(client: net.Socket): void {
    this.#accepted++
    const link = new Link(client, (gone) => this.#gone(gone))
    this.#links.add(link)
    const mode = this.#accept
    if (this.#closed || mode === 'refuse') return link.cut() // closed in between
    if (mode === 'reset') return link.reset()
    if (mode === 'blackhole') {
      client.on('data', () => {}) // swallow the handshake; never answer
      return
    }
    client.pause()
    const server = net.connect({ port: this.#targetPort, host: this.#targetHost, noDelay: true })
    link.attach(server)
    server.once('connect', () => {
      new Pipe(client, server, link, () => this.#up)
      new Pipe(server, client, link, () => this.#down)
      link.piped()
      client.resume()
    })
  }

  #gone(link: Link): void {
    this.#links.delete(link)
    if (this.#links.size > 0) return
    for (const resolve of this.#goneWaiters.splice(0)) resolve()
  }
}
