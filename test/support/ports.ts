import { createServer } from 'node:net'

/**
 * A port on 127.0.0.1 that nothing listens on (it was free a moment ago, until something takes
 * it): a server that is down, whose connects are refused at once. Never another address.
 */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
