import { spawn } from 'node:child_process'
import { beforeAll, expect, it } from 'vitest'
import { bundleFacade } from '../support/bundle.js'
import { describeOnServer, probe } from '../support/servers.js'
import { PG_URL } from './support.js'

// How a script that was right on pg ends on lifeguard/pg: each script runs in a fresh process
// twice, once on the real `pg` and once on the facade, and both runs must end alike.

/** Room for a loaded 2-core CI machine: process exit and pg's socket close are not instant. */
const SLACK_MS = 3_000

/** A folder with the facade bundled into one file, and the scripts' working directory. */
let dir: string

beforeAll(async () => {
  dir = await bundleFacade('pg')
})

interface Ending {
  /** Lines the script printed. */
  lines: string[]
  stderr: string
  /** ms from the script's last line (printed right after its last query) to its exit, or `undefined` if it was still running at `aliveFor`. */
  exitAfterLast: number | undefined
  code: number | null
}

/**
 * Runs `body` as an ESM script with `pg` bound to the real module or the facade's default export.
 * The script prints `last` right after its last query; the process is killed if it is still
 * running `aliveFor` ms after that.
 */
function run(module: 'pg' | 'lifeguard/pg', body: string, aliveFor: number): Promise<Ending> {
  const from = module === 'pg' ? 'pg' : './lifeguard-pg.mjs'
  const script = `import pg from ${JSON.stringify(from)}\nconst url = ${JSON.stringify(PG_URL)}\n${body}`
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let last: number | undefined
    let killer: NodeJS.Timeout | undefined
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
      if (last === undefined && /^last$/m.test(stdout)) {
        last = Date.now()
        killer = setTimeout(() => child.kill('SIGKILL'), aliveFor)
      }
    })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
    })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(killer)
      const killed = signal === 'SIGKILL'
      resolve({
        lines: stdout.trim().split('\n'),
        stderr,
        exitAfterLast: killed || last === undefined ? undefined : Date.now() - last,
        code,
      })
    })
  })
}

/** Runs the script on both modules at once. */
async function twin(body: string, aliveFor = 15_000): Promise<Record<'pg' | 'facade', Ending>> {
  const [onPg, onFacade] = await Promise.all([
    run('pg', body, aliveFor),
    run('lifeguard/pg', body, aliveFor),
  ])
  for (const ending of [onPg, onFacade]) {
    expect(ending.stderr).toBe('')
    expect(ending.lines).toContain('last')
  }
  return { pg: onPg, facade: onFacade }
}

describeOnServer(await probe('postgres'), 'a script ends on lifeguard/pg as on pg', () => {
  it('a Pool that is never ended holds the process for idleTimeoutMillis after its last query, then exits', async () => {
    // Long enough that a reaper on a beat of idle / 2 (the facade's, until idle connections got a
    // deadline timer) would exit up to 3 s late, past the bound below.
    const idle = 6_000
    const { pg, facade } = await twin(`
      const pool = new pg.Pool({ connectionString: url, idleTimeoutMillis: ${idle} })
      await Promise.all([pool.query('SELECT 1'), pool.query('SELECT 2')])
      await pool.query('SELECT 3')
      console.log('last')
    `)
    for (const ending of [pg, facade]) {
      expect(ending.code).toBe(0)
      // Timers may fire a little early by the wall clock; a prompt exit would be ~0.
      expect(ending.exitAfterLast).toBeGreaterThanOrEqual(idle * 0.9)
      expect(ending.exitAfterLast).toBeLessThan(idle + 1_500)
    }
  })

  it('idleTimeoutMillis defaults to 10 s and allowExitOnIdle to false, as on pg', async () => {
    const { pg, facade } = await twin(`
      const pool = new pg.Pool({ connectionString: url })
      console.log('options', pool.options.idleTimeoutMillis, pool.options.allowExitOnIdle)
      const core = pool.lifeguard?.options
      if (core) console.log('core', core.idleTimeout, core.allowExitOnIdle)
      console.log('last')
      await pool.end()
    `)
    expect(pg.lines).toContain('options 10000 false')
    expect(facade.lines).toContain('options 10000 false')
    // What the lifeguard pool under the facade really does.
    expect(facade.lines).toContain('core 10000 false')
  })

  it('with allowExitOnIdle: true, a Pool that is never ended exits promptly after its last query', async () => {
    const { pg, facade } = await twin(`
      const pool = new pg.Pool({ connectionString: url, allowExitOnIdle: true })
      await Promise.all([pool.query('SELECT 1'), pool.query('SELECT 2')])
      await pool.query('SELECT 3')
      console.log('last')
    `)
    for (const ending of [pg, facade]) {
      expect(ending.code).toBe(0)
      // Far below the 10 s idle timeout that would otherwise hold it (alone: well under 1 s).
      expect(ending.exitAfterLast).toBeLessThan(SLACK_MS)
    }
  })

  it('a Client that connects, queries and ends exits promptly', async () => {
    const { pg, facade } = await twin(`
      const client = new pg.Client(url)
      await client.connect()
      await client.query('SELECT 1')
      await client.end()
      console.log('last')
    `)
    for (const ending of [pg, facade]) {
      expect(ending.code).toBe(0)
      // Prompt: no timer or socket holds the process (alone: well under 1 s).
      expect(ending.exitAfterLast).toBeLessThan(SLACK_MS)
    }
  })

  it('a Client that is never ended keeps the process alive', async () => {
    const { pg, facade } = await twin(
      `
      const client = new pg.Client(url)
      await client.connect()
      await client.query('SELECT 1')
      console.log('last')
    `,
      1_500,
    )
    for (const ending of [pg, facade]) expect(ending.exitAfterLast).toBeUndefined()
  })
})
