import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'
import { closedPort } from './ports.js'
import { portOpen } from './throwaway-server.js'

/** A redis-server of a test's own, on 127.0.0.1 and a port of its own, with no persistence. */
export interface ThrowawayRedis {
  readonly port: number
  readonly url: string
  /** Kills the server (SIGKILL) and waits for it to be gone; `start()` brings it back, empty, on the same port (and does nothing while it runs). */
  stop(): Promise<void>
  start(): Promise<void>
  /** Stops it for good and removes its folder. */
  remove(): Promise<void>
}

/**
 * Starts `redis-server` (Debian's, from PATH) in a temp folder, with `--save ""` and
 * `--appendonly no`: a restart loses every key, as a crash of a cache-only Redis does. Never the
 * shared server on 6379.
 */
export async function startThrowawayRedis(): Promise<ThrowawayRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'lifeguard-redis-'))
  const port = await closedPort()
  let child: ChildProcess | undefined
  const start = async () => {
    if (child !== undefined && child.exitCode === null) return
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
      ],
      { stdio: 'ignore' },
    )
    const deadline = Date.now() + 10_000
    while (!(await portOpen(port))) {
      if (Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  const stop = async () => {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null) return
    const exited = new Promise((resolve) => running.once('exit', resolve))
    running.kill('SIGKILL')
    await exited
  }
  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    async remove() {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * A throwaway Redis for the tests of the enclosing `describe`: started in its `beforeAll`, removed
 * in its `afterAll`. The handle it returns is readable inside the tests only.
 */
export function useThrowawayRedis(): ThrowawayRedis {
  let redis: ThrowawayRedis | undefined
  beforeAll(async () => {
    redis = await startThrowawayRedis()
  }, 30_000)
  afterAll(async () => {
    await redis?.remove()
  })
  const started = () => {
    if (redis === undefined)
      throw new Error('the throwaway Redis starts in beforeAll: use it in a test')
    return redis
  }
  return {
    get port() {
      return started().port
    },
    get url() {
      return started().url
    },
    stop: () => started().stop(),
    start: () => started().start(),
    remove: () => started().remove(),
  }
}
