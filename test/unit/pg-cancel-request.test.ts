import { createServer } from 'node:net'
import { describe, expect, it } from 'vitest'
import { sendCancelRequest } from '../../src/dialects/pg-cancel-request.js'

const never = new AbortController().signal

describe('sendCancelRequest', () => {
  it("sends the protocol's 16-byte CancelRequest with the backend's key, and resolves when the server closes", async () => {
    const received: Buffer[] = []
    const server = createServer((socket) => {
      socket.on('data', (chunk) => received.push(chunk))
      // The server reads the request and closes, as the postmaster does.
      socket.on('end', () => socket.end())
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    try {
      await sendCancelRequest({ processID: 4242, secretKey: -7, host: '127.0.0.1', port }, never)
      const packet = Buffer.concat(received)
      expect(packet).toHaveLength(16)
      expect(packet.readInt32BE(0)).toBe(16)
      expect(packet.readInt32BE(4)).toBe(80877102)
      expect(packet.readInt32BE(8)).toBe(4242)
      expect(packet.readInt32BE(12)).toBe(-7)
    } finally {
      server.close()
    }
  })

  it('rejects a client with no backend key, and a refused connection', async () => {
    await expect(sendCancelRequest({}, never)).rejects.toThrow(/no backend key/)
    // A closed port on 127.0.0.1.
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await expect(
      sendCancelRequest({ processID: 1, secretKey: 2, host: '127.0.0.1', port }, never),
    ).rejects.toMatchObject({ code: 'ECONNREFUSED' })
  })

  it('gives up when its signal aborts, on a server that never closes', async () => {
    const server = createServer({ allowHalfOpen: true }, (socket) => socket.resume())
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    try {
      const controller = new AbortController()
      const sent = sendCancelRequest(
        { processID: 1, secretKey: 2, host: '127.0.0.1', port },
        controller.signal,
      )
      setTimeout(() => controller.abort(new Error('gave up')), 20)
      await expect(sent).rejects.toThrow('gave up')
    } finally {
      server.close()
    }
  })
})
