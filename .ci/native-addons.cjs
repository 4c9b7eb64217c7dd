// Preloaded by .ci/node-matrix.sh (NODE_OPTIONS=--require) into the other Node versions of the CI
// matrix, and inherited by vitest's forks: a native addon that would load from
// LIFEGUARD_ADDON_FROM (node_modules' better-sqlite3, built for the main Node's ABI) loads instead
// from LIFEGUARD_ADDON_TO, the same addon built for this Node. Every way of loading an addon
// (require, bindings, import of a CJS package) ends in process.dlopen, so that is the one place.
const path = require('node:path')

const from = process.env.LIFEGUARD_ADDON_FROM
const to = process.env.LIFEGUARD_ADDON_TO
if (from && to) {
  const dlopen = process.dlopen
  const source = path.resolve(from)
  process.dlopen = function dlopenFromMatrixBuild(module, filename, ...rest) {
    const file =
      path.dirname(path.resolve(filename)) === source
        ? path.join(to, path.basename(filename))
        : filename
    return dlopen.call(this, module, file, ...rest)
  }
}
