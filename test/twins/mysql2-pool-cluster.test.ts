import mysql2 from 'mysql2'
import mysql2Promise from 'mysql2/promise'
import { expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import facade from '../../src/compat/mysql2.js'
import promiseFacade from '../../src/compat/mysql2-promise.js'
import { InvalidOptionError } from '../../src/core/errors.js'
import { MYSQL_URL } from '../integrations/support.js'
import { mysqlWireProxy } from '../support/mysql-wire-proxy.js'
import { closedPort } from '../support/ports.js'
import { describeOnServer, probe } from '../support/servers.js'
import { twin } from '../support/twin.js'

// createPoolCluster (issue 14): mysql2's PoolCluster whose nodes are lifeguard pools, each
// scenario run on mysql2's own cluster and on lifeguard/mysql2's.

type Cluster = mysql2.PoolCluster
type Module = Pick<typeof mysql2, 'createPoolCluster'>

const MODULES: Record<'driver' | 'facade', Module> = {
  driver: mysql2,
  facade: facade as unknown as Module,
}

const PROMISE_MODULES: Record<
  'driver' | 'facade',
  Pick<typeof mysql2Promise, 'createPoolCluster'>
> = {
  driver: mysql2Promise,
  facade: promiseFacade as unknown as Pick<typeof mysql2Promise, 'createPoolCluster'>,
}

/** A node on the test server. */
const NODE = { uri: MYSQL_URL, connectionLimit: 2 }

/** Where a connection came from: the node id mysql2 sets on it, or the error's code. */
interface Borrow {
  node?: string
  error?: string | undefined
}

function borrow(cluster: Cluster, pattern?: string, selector?: string): Promise<Borrow> {
  return new Promise((resolve) => {
    const done = (error: NodeJS.ErrnoException | null, connection?: mysql2.PoolConnection) => {
      if (error) return resolve({ error: error.code ?? error.message })
      const node = (connection as unknown as { _clusterId: string })._clusterId
      connection!.release()
      resolve({ node })
    }
    if (pattern === undefined) cluster.getConnection(done)
    else if (selector === undefined) cluster.getConnection(pattern, done)
    else cluster.getConnection(pattern, selector, done)
  })
}

function end(cluster: Cluster): Promise<void> {
  return new Promise((resolve, reject) =>
    cluster.end((error) => (error ? reject(error) : resolve())),
  )
}

/** Records the cluster's events, each as `'<event> <argument>'` (an error as its code). */
function recordEvents(cluster: Cluster): string[] {
  const events: string[] = []
  for (const name of ['warn', 'offline', 'online', 'remove']) {
    cluster.on(name, (argument: unknown) => {
      const shown =
        argument instanceof Error
          ? ((argument as NodeJS.ErrnoException).code ?? argument.message)
          : String(argument)
      events.push(`${name} ${shown}`)
    })
  }
  return events
}

describeOnServer(
  await probe('mysql'),
  'lifeguard/mysql2: createPoolCluster, twinned with mysql2',
  () => {
    twin(
      'createPoolCluster: RR, ORDER and RANDOM pick among the nodes a pattern matches',
      MODULES,
      async (m) => {
        const cluster = m.createPoolCluster()
        try {
          cluster.add('web1', NODE)
          cluster.add('web2', NODE)
          cluster.add('jobs', NODE)
          // An id taken already: mysql2 ignores the second add.
          cluster.add('jobs', { ...NODE, connectionLimit: 1 })
          const rr: Borrow[] = []
          for (let i = 0; i < 4; i++) rr.push(await borrow(cluster, 'web*'))
          const order: Borrow[] = []
          for (let i = 0; i < 3; i++) order.push(await borrow(cluster, 'web*', 'ORDER'))
          const random = await borrow(cluster, 'web*', 'RANDOM')
          expect(['web1', 'web2']).toContain(random.node)
          const everyNode: Borrow[] = []
          for (let i = 0; i < 3; i++) everyNode.push(await borrow(cluster))
          const single = await borrow(cluster, 'jobs')
          const none = await borrow(cluster, 'nothing*')
          return { rr, order, everyNode, single, none }
        } finally {
          await end(cluster)
        }
      },
    )

    twin(
      'createPoolCluster: add(config) names the node CLUSTER::n, and a URL is a config',
      MODULES,
      async (m) => {
        const cluster = m.createPoolCluster({ defaultSelector: 'ORDER' })
        try {
          cluster.add(NODE)
          cluster.add('url', MYSQL_URL)
          return [
            await borrow(cluster),
            await borrow(cluster, 'url'),
            await borrow(cluster, 'CLUSTER::*'),
          ]
        } finally {
          await end(cluster)
        }
      },
    )

    twin(
      'createPoolCluster: of(pattern).query and .execute lend and give back',
      MODULES,
      async (m) => {
        const cluster = m.createPoolCluster()
        try {
          cluster.add('a', NODE)
          cluster.add('b', NODE)
          const replicas = cluster.of('*')
          const rows: unknown[] = []
          for (const n of [1, 2, 3]) {
            rows.push(
              await new Promise((resolve, reject) =>
                replicas.query(`SELECT ${n} AS n`, (error, result) =>
                  error ? reject(error) : resolve(result),
                ),
              ),
            )
            rows.push(
              await new Promise((resolve, reject) =>
                replicas.execute('SELECT ? AS n', [n * 10], (error, result) =>
                  error ? reject(error) : resolve(result),
                ),
              ),
            )
          }
          const missing = await new Promise((resolve) =>
            cluster.of('nothing').query('SELECT 1', (error) => resolve(error?.code)),
          )
          // Every lent connection came back: each node lends again up to its limit.
          const again = await Promise.all([borrow(cluster, 'a'), borrow(cluster, 'b')])
          return { rows, missing, again }
        } finally {
          await end(cluster)
        }
      },
    )

    twin(
      'createPoolCluster: remove(pattern) ends the matching nodes and stops lending from them',
      MODULES,
      async (m) => {
        const cluster = m.createPoolCluster()
        const events = recordEvents(cluster)
        try {
          cluster.add('a', NODE)
          cluster.add('b', NODE)
          await borrow(cluster, 'a')
          cluster.remove('a')
          const after = [await borrow(cluster), await borrow(cluster), await borrow(cluster, 'a')]
          return { after, events }
        } finally {
          await end(cluster)
        }
      },
    )

    twin(
      'createPoolCluster: after end(), getConnection fails as mysql2 says, and end() again calls back',
      MODULES,
      async (m) => {
        const cluster = m.createPoolCluster({ canRetry: false })
        const events = recordEvents(cluster)
        cluster.add('a', NODE)
        await borrow(cluster)
        await end(cluster)
        const afterEnd = await borrow(cluster)
        await end(cluster)
        return { afterEnd, events }
      },
    )

    twin(
      "createPoolCluster: a node that refuses connections is removed after removeNodeErrorCount, with 'remove' and 'warn', and the caller served by another",
      MODULES,
      async (m) => {
        const down = await closedPort()
        const cluster = m.createPoolCluster({ removeNodeErrorCount: 2 })
        const events = recordEvents(cluster)
        try {
          cluster.add('down', { uri: `mysql://root@127.0.0.1:${down}/test`, connectionLimit: 1 })
          cluster.add('up', NODE)
          const started = performance.now()
          const borrows: Borrow[] = []
          for (let i = 0; i < 4; i++) borrows.push(await borrow(cluster, '*', 'ORDER'))
          // Refused connects fail in milliseconds; waiting for a timeout would take seconds.
          expect(performance.now() - started).toBeLessThan(3_000)
          return { borrows, events }
        } finally {
          await end(cluster)
        }
      },
      { timeout: 20_000 },
    )

    twin(
      "createPoolCluster: with restoreNodeTimeout a failing node goes 'offline', and comes back 'online' once it connects",
      MODULES,
      async (m) => {
        const port = await closedPort()
        const cluster = m.createPoolCluster({
          removeNodeErrorCount: 1,
          restoreNodeTimeout: 1_000,
        })
        const events = recordEvents(cluster)
        let proxy: Awaited<ReturnType<typeof mysqlWireProxy>> | undefined
        try {
          cluster.add('flaky', { uri: `mysql://root@127.0.0.1:${port}/test`, connectionLimit: 1 })
          cluster.add('steady', NODE)
          const first = await borrow(cluster, '*', 'ORDER')
          // Offline: only the steady node is tried, and the flaky one alone has none online.
          const whileOffline = [await borrow(cluster, '*', 'ORDER'), await borrow(cluster, 'flaky')]
          // The server behind the flaky node comes up; after restoreNodeTimeout it is tried again.
          proxy = await mysqlWireProxy(MYSQL_URL, { port })
          await new Promise((resolve) => setTimeout(resolve, 1_200))
          const restored = await borrow(cluster, '*', 'ORDER')
          return { first, whileOffline, restored, events }
        } finally {
          await end(cluster)
          await proxy?.close()
        }
      },
      { timeout: 20_000 },
    )

    twin(
      'createPoolCluster: canRetry false hands the connect error to the caller, after counting it',
      MODULES,
      async (m) => {
        const down = await closedPort()
        const cluster = m.createPoolCluster({ canRetry: false, removeNodeErrorCount: 1 })
        const events = recordEvents(cluster)
        try {
          cluster.add('down', { uri: `mysql://root@127.0.0.1:${down}/test`, connectionLimit: 1 })
          cluster.add('up', NODE)
          const borrows = [await borrow(cluster, '*', 'ORDER'), await borrow(cluster, '*', 'ORDER')]
          return { borrows, events }
        } finally {
          await end(cluster)
        }
      },
      { timeout: 20_000 },
    )

    twin(
      'createPoolCluster (mysql2/promise): of().query, getConnection, add, remove and end',
      PROMISE_MODULES,
      async (m) => {
        const cluster = m.createPoolCluster({ defaultSelector: 'ORDER' })
        const removed: string[] = []
        cluster.on('remove', (id: string) => removed.push(id))
        cluster.add('a', NODE)
        cluster.add('b', NODE)
        const [rows] = await cluster.of('*').query('SELECT 1 AS n')
        const [executed] = await cluster.of('b').execute('SELECT ? AS n', [2])
        const connection = await cluster.getConnection('b')
        const node = (connection.connection as unknown as { _clusterId: string })._clusterId
        const [own] = await connection.query('SELECT 3 AS n')
        connection.release()
        ;(cluster as unknown as { remove(pattern: string): void }).remove('a')
        const afterRemove = await cluster.getConnection().then(
          (c) => {
            c.release()
            return (c.connection as unknown as { _clusterId: string })._clusterId
          },
          (error: NodeJS.ErrnoException) => error.code,
        )
        const missing = await cluster
          .of('a')
          .query('SELECT 1')
          .then(
            () => 'answered',
            (error: NodeJS.ErrnoException) => error.code,
          )
        await cluster.end()
        return { rows, executed, node, own, afterRemove, missing, removed }
      },
    )

    it("createPoolCluster: each node is a lifeguard pool (lifeguardOf finds it), and the cluster's own checks", async () => {
      const cluster = facade.createPoolCluster()
      try {
        cluster.add('a', NODE)
        const connection = await new Promise<mysql2.PoolConnection>((resolve, reject) =>
          cluster.getConnection('a', (error, c) => (error ? reject(error) : resolve(c))),
        )
        const nodes = (cluster as unknown as { _nodes: Record<string, { pool: object }> })._nodes
        const pool = lifeguardOf(nodes.a!.pool)
        expect(pool.stats().leased).toBe(1)
        connection.release()
        expect(() => facade.createPoolCluster({ defaultSelector: 'FASTEST' })).toThrow(
          InvalidOptionError,
        )
        expect(() => facade.createPoolCluster({ defaultSelector: 'FASTEST' })).toThrow(
          /defaultSelector: "FASTEST"; expected one of RR, RANDOM, ORDER/,
        )
        // A node config the facade refuses throws at add() and adds nothing.
        expect(() => cluster.add('bad', { ...NODE, connectionLimit: -1 })).toThrow(
          InvalidOptionError,
        )
        expect(await borrow(cluster, 'bad')).toEqual({ error: 'POOL_NOEXIST' })
      } finally {
        await end(cluster)
      }
    })
  },
)
