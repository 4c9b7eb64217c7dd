import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FaultProxy } from './fault-proxy.js'

// The proxy itself, against a local echo server: each fault does what it says, and no link is
// left behind. The scenarios rely on it, so it is tested first.

let echo: net.Server
let echoPort = 0
const serverSockets = new Set<net.Socket>()

beforeAll(async () => {
  echo = net.createServer((socket) => {
    serverSockets.add(socket)
    socket.on('close', () => serverSockets.delete(socket))
    socket.on('error', () => {})
    socket.pipe(socket)
  })
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
  echoPort = (echo.address() as net.AddressInfo).port
})

afterAll(async () => {
  await new Promise<void>((resolve) => echo.close(() => resolve()))
})

interface Client {
  socket: net.Socket
  received: Buffer[]
  chunks: number
  error: NodeJS.ErrnoException | undefined
  closed: Promise<void>
}

function connect(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
    const client: Client = {
      socket,
      received: [],
      chunks: 0,
      error: undefined,
      closed: new Promise((done) => socket.once('close', () => done())),
    }
    socket.on('data', (chunk) => {
      client.received.push(chunk)
      client.chunks++
    })
    socket.on('error', (error) => {
      client.error = error
      reject(error)
    })
    socket.once('connect', () => resolve(client))
  })
}

function text(client: Client): string {
  return Buffer.concat(client.received).toString()
}

async function until(check: () => boolean, ms = 2_000): Promise<void> {
  const deadline = performance.now() + ms
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`not within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

async function withProxy(body: (proxy: FaultProxy) => Promise<void>): Promise<void> {
  const proxy = await FaultProxy.start(echoPort)
  try {
    await body(proxy)
    await proxy.clear()
    proxy.cutAll()
    await proxy.waitForNoLinks(2_000)
    expect(proxy.liveLinks).toBe(0)
  } finally {
    await proxy.close()
  }
}

describe('FaultProxy', () => {
  it('forwards both ways and counts live links until both sides close', () =>
    withProxy(async (proxy) => {
      const c = await connect(proxy.port)
      c.socket.write('hello')
      await until(() => text(c) === 'hello')
      expect(proxy.liveLinks).toBe(1)
      c.socket.end()
      await proxy.waitForNoLinks(1_000)
      expect(proxy.liveLinks).toBe(0)
    }))

  it('adds latency with jitter, in order', () =>
    withProxy(async (proxy) => {
      proxy.set({ downstream: { latencyMs: 100, jitterMs: 30 } })
      const c = await connect(proxy.port)
      const started = performance.now()
      for (let i = 0; i < 10; i++) c.socket.write(String(i))
      await until(() => text(c) === '0123456789')
      const elapsed = performance.now() - started
      expect(elapsed).toBeGreaterThanOrEqual(65)
      // Once, not per chunk: ten chunks delayed one after another would take about 1 s. The
      // bound leaves a loaded CI machine room (measured alone: 100-135 ms).
      expect(elapsed).toBeLessThan(800)
      c.socket.destroy()
    }))

  it('refuses new connections while down, cuts live ones, and listens again when up', () =>
    withProxy(async (proxy) => {
      const live = await connect(proxy.port)
      await proxy.down()
      await live.closed
      await expect(connect(proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
      await proxy.up()
      const c = await connect(proxy.port)
      c.socket.write('back')
      await until(() => text(c) === 'back')
      c.socket.destroy()
    }))

  it('blackholes: new links are accepted and never answered, live ones stop forwarding', () =>
    withProxy(async (proxy) => {
      const live = await connect(proxy.port)
      await proxy.blackhole()
      const fresh = await connect(proxy.port)
      live.socket.write('lost')
      fresh.socket.write('lost')
      // Deliberate: nothing must arrive, and there is no event for nothing; give it 150 ms.
      await new Promise((resolve) => setTimeout(resolve, 150))
      expect(text(live)).toBe('')
      expect(text(fresh)).toBe('')
      expect(live.socket.destroyed || fresh.socket.destroyed).toBe(false)
      live.socket.destroy()
      fresh.socket.destroy()
    }))

  it('resets live links with an RST (ECONNRESET), and new ones in reset mode', () =>
    withProxy(async (proxy) => {
      const live = await connect(proxy.port)
      live.socket.on('error', () => {})
      proxy.resetAll()
      await live.closed
      expect(live.error?.code).toBe('ECONNRESET')
      await proxy.setAccept('reset')
      const fresh = await connect(proxy.port).catch((error) => error)
      if (!(fresh instanceof Error)) {
        fresh.socket.on('error', () => {})
        await fresh.closed
        expect(fresh.error?.code).toBe('ECONNRESET')
      }
    }))

  it('closes after N bytes, and resets after N bytes', () =>
    withProxy(async (proxy) => {
      proxy.set({ downstream: { closeAfterBytes: 3 } })
      const c = await connect(proxy.port)
      c.socket.write('abcdef')
      await c.closed
      expect(text(c)).toBe('abc')
      expect(c.error).toBeUndefined()
      proxy.set({ downstream: { closeAfterBytes: undefined, resetAfterBytes: 2 } })
      const r = await connect(proxy.port)
      r.socket.on('error', () => {})
      r.socket.write('abcdef')
      await r.closed
      expect(text(r)).toBe('ab')
      expect(r.error?.code).toBe('ECONNRESET')
    }))

  it('slices writes into 1-byte chunks', () =>
    withProxy(async (proxy) => {
      proxy.set({ downstream: { slice: true, latencyMs: 0 } })
      const c = await connect(proxy.port)
      c.socket.write('0123456789')
      await until(() => text(c) === '0123456789')
      // Each byte is its own write, flushed before the next: the client sees several reads.
      expect(c.chunks).toBeGreaterThan(1)
      c.socket.destroy()
    }))

  it('caps bandwidth', () =>
    withProxy(async (proxy) => {
      proxy.set({ downstream: { bytesPerSecond: 20_000 } })
      const c = await connect(proxy.port)
      const started = performance.now()
      c.socket.write(Buffer.alloc(4_000, 1))
      await until(() => Buffer.concat(c.received).length === 4_000)
      // 4 KB at 20 KB/s: about 200 ms.
      expect(performance.now() - started).toBeGreaterThanOrEqual(180)
      c.socket.destroy()
    }))

  it('switches faults on live links at run time', () =>
    withProxy(async (proxy) => {
      const c = await connect(proxy.port)
      c.socket.write('a')
      await until(() => text(c) === 'a')
      proxy.setBoth({ blackhole: true })
      c.socket.write('b')
      // Deliberate: 'b' must not arrive, and there is no event for nothing; give it 100 ms.
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect(text(c)).toBe('a')
      proxy.setBoth({ blackhole: false })
      c.socket.write('c')
      await until(() => text(c) === 'ac')
      c.socket.destroy()
    }))
})
