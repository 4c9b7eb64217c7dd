'use strict'
// A mocha reporter for the external-suites harness: it appends one JSON line per event to the
// file named by LG_EXT_RESULTS, as the events happen, so a test file that kills its own process
// still leaves the results of the tests that ran before. The first line is the plan: every test
// mocha loaded, so the harness can tell which tests never ran.

const fs = require('node:fs')
const path = require('node:path')

// Mocha.Runner.constants, spelled out: this file is loaded by the upstream tree's mocha and must
// not resolve a mocha of its own.
const EVENT_RUN_BEGIN = 'start'
const EVENT_TEST_PASS = 'pass'
const EVENT_TEST_FAIL = 'fail'
const EVENT_TEST_PENDING = 'pending'

function collect(suite, out) {
  for (const test of suite.tests) out.push(describeTest(test))
  for (const child of suite.suites) collect(child, out)
  return out
}

function describeTest(test) {
  return { file: test.file ? path.basename(test.file) : '', title: test.fullTitle() }
}

function firstLine(err) {
  const text = err && (err.message || String(err))
  // mocha's timeout message ends with advice and the file's absolute path: keep the first sentence
  const line = String(text || 'failed')
    .split('\n')[0]
    .replace(/\. For async tests and hooks.*$/, '')
  // Where in the test file it failed, when the stack says: e.g. " (at sizing.js:78)".
  const frame = String(err?.stack || '')
    .split('\n')
    .map((l) => /\btest[/\\]([^/\\\s]+\.js):(\d+)/.exec(l))
    .find(Boolean)
  return frame ? `${line} (at ${frame[1]}:${frame[2]})` : line
}

/** Writes the plan and each test's outcome as JSON lines to LG_EXT_RESULTS. */
class LifeguardExternalReporter {
  constructor(runner) {
    const out = process.env.LG_EXT_RESULTS
    const write = (record) => fs.appendFileSync(out, `${JSON.stringify(record)}\n`)
    runner.on(EVENT_RUN_BEGIN, () => write({ type: 'plan', tests: collect(runner.suite, []) }))
    runner.on(EVENT_TEST_PASS, (test) => write({ type: 'passed', ...describeTest(test) }))
    runner.on(EVENT_TEST_PENDING, (test) => write({ type: 'skipped', ...describeTest(test) }))
    runner.on(EVENT_TEST_FAIL, (test, err) =>
      write({ type: 'failed', ...describeTest(test), error: firstLine(err) }),
    )
  }
}

module.exports = LifeguardExternalReporter
