import { connect, type Socket } from 'node:net'

/** What a pg `Client` knows of its backend once connected (`BackendKeyData`), and where it is. */
interface BackendKey {
  processID?: unknown
  secretKey?: unknown
  host?: unknown
  port?: unknown
}

/** The CancelRequest code of the PostgreSQL protocol: 1234 in the high 16 bits, 5678 in the low. */
const CANCEL_REQUEST_CODE = 80877102

/**
 * Sends PostgreSQL's cancel request for the statement running on `client`'s backend: a new
 * connection to the server carrying only the backend's process id and secret key, which the
 * server closes once it has signalled the backend. Resolves when the server has closed it (the
 * backend was signalled; the statement may still be ending); rejects when the client has no key
 * (not connected, or a client class without one), when the connection fails, or when `signal`
 * aborts first. The request goes over plain TCP (or the Unix socket the client uses): the
 * server reads it before any TLS or authentication.
 */
export function sendCancelRequest(client: object, signal: AbortSignal): Promise<void> {
  const key = client as BackendKey
  const { processID, secretKey } = key
  if (!Number.isInteger(processID) || !Number.isInteger(secretKey)) {
    return Promise.reject(
      new Error('cannot cancel: the client has no backend key (is it connected?)'),
    )
  }
  if (signal.aborted) return Promise.reject(signal.reason)
  const host = typeof key.host === 'string' && key.host !== '' ? key.host : 'localhost'
  const port = Number(key.port) || 5432
  const packet = Buffer.alloc(16)
  packet.writeInt32BE(16, 0)
  packet.writeInt32BE(CANCEL_REQUEST_CODE, 4)
  packet.writeInt32BE(processID as number, 8)
  packet.writeInt32BE(secretKey as number, 12)
  return new Promise<void>((resolve, reject) => {
    const socket: Socket = host.startsWith('/')
      ? connect(`${host}/.s.PGSQL.${port}`)
      : connect(port, host)
    let failure: unknown
    const onAbort = () => {
      failure ??= signal.reason
      socket.destroy()
    }
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => socket.end(packet))
    socket.on('error', (error) => {
      failure ??= error
    })
    // The server closes the connection after signalling the backend; it sends nothing back.
    socket.resume()
    socket.once('close', () => {
      signal.removeEventListener('abort', onAbort)
      if (failure === undefined) resolve()
      else reject(failure)
    })
  })
}
