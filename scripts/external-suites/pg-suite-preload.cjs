'use strict'
// Preloaded (`node -r`) into each of node-postgres's integration test files by the
// external-suites harness. It leaves the test file as it is and:
// - records every `suite.test(...)` of pg's own test/suite.js and its outcome as JSON lines in
//   LG_EXT_RESULTS (pg's runner exits the process at the first failure, so the tests after it are
//   reported as not run, unless LG_EXT_KEEP_GOING is set);
// - with LG_EXT_FACADE set to the path of lifeguard's dist/pg.cjs, swaps `Pool` on pg's module
//   (the `helper.pg` the tests use) for the facade's, so the tests run against the facade while
//   their clients come from the same pg copy.

const fs = require('node:fs')
const path = require('node:path')

const out = process.env.LG_EXT_RESULTS
const pgRoot = process.env.LG_EXT_PG_ROOT
const file = path.basename(process.argv[1] || '')
const write = (record) => fs.appendFileSync(out, `${JSON.stringify({ file, ...record })}\n`)

if (process.env.LG_EXT_FACADE) {
  const pg = require(path.join(pgRoot, 'lib', 'index.js'))
  pg.Pool = require(process.env.LG_EXT_FACADE).Pool
}

const Suite = require(path.join(pgRoot, 'test', 'suite.js'))
let current = null
const finished = new Set()

const originalTest = Suite.prototype.test
Suite.prototype.test = function (name, cb) {
  write({ type: 'planned', title: name })
  return originalTest.call(this, name, cb)
}

// With LG_EXT_KEEP_GOING set, a failed or timed-out test is recorded and the next one runs,
// where pg's runner would exit (an uncaught exception still ends the file: pg's test-helper exits).
const keepGoing = Boolean(process.env.LG_EXT_KEEP_GOING)
function runAndContinue(test, cb) {
  current = test.name
  process.stdout.write(`  ${test.name} `)
  let settled = false
  const settle = (record) => {
    if (settled) return
    settled = true
    clearTimeout(timer)
    finished.add(test.name)
    write({ title: test.name, ...record })
    current = null
    cb()
  }
  const timer = setTimeout(
    () => settle({ type: 'failed', error: `did not complete within ${test.timeout}ms` }),
    test.timeout,
  )
  test.run((err) => settle(err ? { type: 'failed', error: firstLine(err) } : { type: 'passed' }))
}

const originalRun = Suite.prototype.run
Suite.prototype.run = function (test, cb) {
  if (keepGoing) return runAndContinue(test, cb)
  current = test.name
  const originalTestRun = test.run
  test.run = function (done) {
    return originalTestRun.call(this, (err) => {
      finished.add(test.name)
      if (err) write({ type: 'failed', title: test.name, error: firstLine(err) })
      else write({ type: 'passed', title: test.name })
      current = null
      done(err)
    })
  }
  return originalRun.call(this, test, cb)
}

process.on('uncaughtException', (err) => {
  if (current && !finished.has(current)) {
    finished.add(current)
    write({ type: 'failed', title: current, error: `uncaught exception: ${firstLine(err)}` })
  } else {
    write({ type: 'error', error: `uncaught exception outside a test: ${firstLine(err)}` })
  }
})

process.on('exit', (code) => {
  if (current && !finished.has(current)) {
    write({
      type: 'failed',
      title: current,
      error: `process exited (code ${code}) during the test`,
    })
  }
})

function firstLine(err) {
  const text = err && (err.message || String(err))
  return String(text || 'failed').split('\n')[0]
}
