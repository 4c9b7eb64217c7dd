import { once } from 'node:events'
import { createServer, type Socket, connect as tcpConnect } from 'node:net'

/** One client connection through the proxy, and the commands it sent after the handshake. */
export interface ProxiedConnection {
  /**
   * Each command, in order: a COM_QUERY as its SQL, any other command by name (`'COM_PING'`,
   * `'COM_QUIT'`, `'COM_RESET_CONNECTION'`, `'COM_STMT_PREPARE: <sql>'`, …).
   */
  readonly commands: string[]
}

/** A TCP proxy on 127.0.0.1 in front of a MySQL or MariaDB server. */
export interface MysqlWireProxy {
  /** `mysql://user@127.0.0.1:<port>/db`: the upstream URL with the proxy's port. */
  readonly url: string
  readonly port: number
  /** Every connection made through the proxy, in the order they were accepted. */
  readonly connections: readonly ProxiedConnection[]
  /** Stops listening and drops every connection. */
  close(): Promise<void>
}

/** Options of {@link mysqlWireProxy}. */
export interface MysqlWireProxyOptions {
  /**
   * A COM_QUERY for which this returns true is not forwarded: the proxy answers it with an error
   * packet itself (errno 1105, as a proxy that does not support a statement answers).
   */
  readonly refuse?: (sql: string) => boolean
  /**
   * A COM_QUERY for which this returns true is neither forwarded nor answered: a proxy gone
   * silent for it (every later command of that connection then waits behind it).
   */
  readonly swallow?: (sql: string) => boolean
  /** The port to listen on (127.0.0.1); a free one when left out. */
  readonly port?: number
}

const COMMAND_NAMES: Record<number, string> = {
  1: 'COM_QUIT',
  2: 'COM_INIT_DB',
  14: 'COM_PING',
  17: 'COM_CHANGE_USER',
  22: 'COM_STMT_PREPARE',
  23: 'COM_STMT_EXECUTE',
  25: 'COM_STMT_CLOSE',
  31: 'COM_RESET_CONNECTION',
}

/** An ERR packet with sequence number `seq`: errno 1105 (ER_UNKNOWN_ERROR), SQLSTATE HY000. */
function errorPacket(seq: number, message: string): Buffer {
  const payload = Buffer.concat([
    Buffer.from([0xff, 1105 & 0xff, 1105 >> 8]),
    Buffer.from(`#HY000${message}`, 'utf8'),
  ])
  const header = Buffer.from([
    payload.length & 0xff,
    (payload.length >> 8) & 0xff,
    (payload.length >> 16) & 0xff,
    seq,
  ])
  return Buffer.concat([header, payload])
}

/**
 * A proxy that reads the client's side of the MySQL protocol (plain TCP, no TLS, no compression):
 * it records each command a client sends (a packet with sequence number 0 once the handshake is
 * over), and can refuse some queries. For tests that count what a pool sends per connection, or
 * that need a server (a proxy, a router) that does not answer every statement.
 */
export async function mysqlWireProxy(
  upstreamUrl: string,
  options: MysqlWireProxyOptions = {},
): Promise<MysqlWireProxy> {
  const upstream = new URL(upstreamUrl)
  const upstreamPort = Number(upstream.port || 3306)
  const connections: ProxiedConnection[] = []
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const record: ProxiedConnection = { commands: [] }
    connections.push(record)
    const target = tcpConnect(upstreamPort, upstream.hostname)
    for (const socket of [client, target]) {
      sockets.add(socket)
      socket.on('error', () => {})
      socket.on('close', () => {
        sockets.delete(socket)
        client.destroy()
        target.destroy()
      })
    }
    target.pipe(client)
    let buffered = Buffer.alloc(0)
    let handshakeOver = false
    client.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      while (buffered.length >= 4) {
        const length = buffered[0]! | (buffered[1]! << 8) | (buffered[2]! << 16)
        if (buffered.length < 4 + length) break
        const packet = buffered.subarray(0, 4 + length)
        buffered = buffered.subarray(4 + length)
        const seq = packet[3]!
        // The handshake response and any auth-switch reply carry seq > 0; every command seq 0.
        if (seq === 0 && length > 0) handshakeOver = true
        if (!handshakeOver || seq !== 0) {
          target.write(packet)
          continue
        }
        const command = packet[4]!
        const body = packet.subarray(5).toString('utf8')
        if (command === 0x03) {
          record.commands.push(body)
          if (options.refuse?.(body) === true) {
            client.write(errorPacket(1, 'statement not supported by this proxy'))
            continue
          }
          if (options.swallow?.(body) === true) continue
        } else {
          const name = COMMAND_NAMES[command] ?? `COM_0x${command.toString(16)}`
          record.commands.push(command === 0x16 ? `${name}: ${body}` : name)
        }
        target.write(packet)
      }
    })
  })
  server.listen(options.port ?? 0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const url = new URL(upstreamUrl)
  url.hostname = '127.0.0.1'
  url.port = String(port)
  return {
    url: url.toString(),
    port,
    connections,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
