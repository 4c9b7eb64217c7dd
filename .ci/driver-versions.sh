#!/usr/bin/env bash
# Runs the conformance suite and the facade suites against the OLDEST version of each driver peer
# that package.json's peerDependencies allow (pg, mysql2, better-sqlite3): the floor of each range,
# read from package.json, so that the ranges say what was tested. The newest is what package-lock
# installs, which the main run (npm test, in .ci/run) tests.
#
# Each driver goes into a prefix of its own outside node_modules (which `npm ci` deletes), and
# vitest.config.ts's LIFEGUARD_DRIVERS aliases every import of it in src/ and test/ to that copy
# (NODE_PATH does not reach ESM imports). test/conformance/driver-versions.test.ts fails unless the
# aliases really resolve to the versions asked for. better-sqlite3's prebuilt download cannot be
# fetched here, so npm compiles it against this Node's headers (a few minutes, once: a prefix that
# already holds the version is reused).
# Usage: .ci/driver-versions.sh   (LIFEGUARD_DRIVER_CACHE moves the prefixes)
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${LIFEGUARD_DRIVER_CACHE:-/tmp/lifeguard-drivers}
drivers=(pg mysql2 better-sqlite3)

log() { printf '\n== %s\n' "$*"; }

# The floor of a peer range: ">=8.21 <9" -> 8.21.0, ">=9" -> 9.0.0.
floor() {
  node -e '
    const range = require("./package.json").peerDependencies[process.argv[1]]
    const m = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\s|$)/.exec(range ?? "")
    if (!m) { console.error(`peer range of ${process.argv[1]} is not ">=x.y…": ${range}`); process.exit(1) }
    console.log(`${m[1]}.${m[2] ?? 0}.${m[3] ?? 0}`)
  ' "$1"
}

# Installs $1@$2 into $cache/$1-$2 (npm reads an "@" in a --prefix path as a package spec).
install_driver() {
  local name=$1 version=$2 dir=$cache/$1-$2
  if [ "$(node -p "require('$dir/node_modules/$name/package.json').version" 2>/dev/null)" = "$version" ] &&
    { [ "$name" != better-sqlite3 ] || [ -f "$dir/node_modules/$name/build/Release/better_sqlite3.node" ]; }; then
    return
  fi
  log "installing $name@$version into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  echo '{"private":true}' >"$dir/package.json"
  # nodedir: where this Node's headers are, for a better-sqlite3 compiled from source.
  npm_config_nodedir=${npm_config_nodedir:-$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")} \
    npm install --prefix "$dir" --no-save --no-audit --no-fund \
    "$name@$version" >"$dir.log" 2>&1 || {
    tail -n 40 "$dir.log" >&2
    exit 1
  }
}

start=$SECONDS
aliases=()
versions=()
for name in "${drivers[@]}"; do
  version=$(floor "$name")
  install_driver "$name" "$version"
  aliases+=("$name=$cache/$name-$version/node_modules")
  versions+=("$name@$version")
done
echo "drivers ready in $((SECONDS - start)) s: ${versions[*]}"

IFS=,
export LIFEGUARD_DRIVERS="${aliases[*]}"
export LIFEGUARD_DRIVER_VERSIONS="${versions[*]}"
unset IFS

log "test/conformance and the facade suites on ${versions[*]}"
start=$SECONDS
npx vitest run test/conformance \
  test/integrations/pg-facade.test.ts test/integrations/pg-facade-fuzz.test.ts \
  test/integrations/pg-regressions.test.ts test/integrations/pg-pool-config.test.ts \
  test/integrations/mysql2-facade.test.ts test/integrations/mysql2-promise-facade.test.ts \
  test/integrations/mysql2-options-fuzz.test.ts test/integrations/compat-regressions.test.ts
echo "oldest drivers: suites took $((SECONDS - start)) s"
