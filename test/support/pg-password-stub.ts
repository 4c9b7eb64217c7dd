import { createServer, type Socket } from 'node:net'

/** A PostgreSQL wire stub that refuses every password: see {@link passwordRejectingServer}. */
export interface PasswordRejectingServer {
  readonly port: number
  /** The passwords clients sent, in order: what pg really put on the wire. */
  readonly received: string[]
  close(): Promise<void>
}

/**
 * A PostgreSQL wire stub on 127.0.0.1 that asks for a cleartext password and answers 28P01
 * ("password authentication failed for user `user`"), as a server checking passwords would: the
 * suite's PostgreSQL trusts 127.0.0.1, so it never fails a password. The pg driver and the dialect
 * talking to it are the real ones.
 */
export async function passwordRejectingServer(user: string): Promise<PasswordRejectingServer> {
  const received: string[] = []
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buffer = Buffer.alloc(0)
    let started = false
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      if (!started && buffer.length >= 8 && buffer.length >= buffer.readInt32BE(0)) {
        started = true
        buffer = buffer.subarray(buffer.readInt32BE(0))
        socket.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])) // AuthenticationCleartextPassword
      }
      if (started && buffer.length >= 5 && buffer[0] === 0x70) {
        const length = buffer.readInt32BE(1)
        if (buffer.length < 1 + length) return
        received.push(buffer.subarray(5, length).toString('utf8'))
        const fields = Buffer.from(
          `SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "${user}"\0\0`,
        )
        const header = Buffer.alloc(5)
        header.write('E', 0)
        header.writeInt32BE(4 + fields.length, 1)
        socket.end(Buffer.concat([header, fields]))
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as { port: number }).port,
    received,
    close: () => {
      for (const socket of sockets) socket.destroy()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}
