#!/usr/bin/env bash
# Runs the unit and conformance suites under the other Node versions that package.json's
# `engines` promises (the full suite runs under the machine's own Node, in .ci/run).
#
# The only downloads this machine may make are from the npm registry, so each Node comes from the
# registry's `node-<platform>-<arch>` package, which ships the binary and the C++ headers.
# better-sqlite3 is a native addon built for one Node ABI: its prebuilt download cannot be fetched
# here, so it is compiled from node_modules' sources against each Node's headers into the cache,
# and .ci/native-addons.cjs loads that copy in place of node_modules' (which stays the main Node's).
#
# Idempotent: a Node or an addon already in the cache is reused. The cache is outside node_modules,
# which `npm ci` deletes, so a CI run downloads and compiles only when a version changes.
# Usage: .ci/node-matrix.sh [version…]   (LIFEGUARD_NODE_CACHE moves the cache)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then versions=(22.23.5 24.22.3); fi
cache=${LIFEGUARD_NODE_CACHE:-/tmp/lifeguard-node-matrix}
platform=$(node -p process.platform)
arch=$(node -p process.arch)
node_gyp=$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js
addon_src=$root/node_modules/better-sqlite3
addon_version=$(node -p "require('$addon_src/package.json').version")

log() { printf '\n== %s\n' "$*"; }

# Unpacks node-<platform>-<arch>@$1 into $cache/node-$1 (bin/node and include/node).
install_node() {
  local version=$1 dir=$cache/node-$1
  if [ -x "$dir/bin/node" ] && [ "$("$dir/bin/node" --version)" = "v$version" ]; then return; fi
  log "fetching node-$platform-$arch@$version from the npm registry"
  rm -rf "$dir" "$dir.partial"
  mkdir -p "$dir.partial"
  (
    cd "$dir.partial"
    tarball=$(npm pack --silent "node-$platform-$arch@$version" | tail -n 1)
    tar -xzf "$tarball" --strip-components=1
    rm "$tarball"
  )
  mv "$dir.partial" "$dir"
}

# Compiles node_modules' better-sqlite3 against the headers of Node $1, into $cache/node-$1/better-sqlite3.
build_addon() {
  local version=$1 dir=$cache/node-$1
  local out=$dir/better-sqlite3
  if [ -f "$out/build/Release/better_sqlite3.node" ] && [ "$(cat "$out/.built-from" 2>/dev/null)" = "$addon_version" ]; then
    return
  fi
  log "building better-sqlite3 $addon_version for Node $version"
  rm -rf "$out" "$out.partial"
  mkdir -p "$out.partial"
  cp -r "$addon_src/binding.gyp" "$addon_src/package.json" "$addon_src/src" "$addon_src/deps" "$out.partial/"
  (cd "$out.partial" && PATH="$dir/bin:$PATH" "$dir/bin/node" "$node_gyp" rebuild --release --jobs=2 --nodedir="$dir" >build.log 2>&1) || {
    tail -n 40 "$out.partial/build.log" >&2
    exit 1
  }
  echo "$addon_version" >"$out.partial/.built-from"
  mv "$out.partial" "$out"
}

# Runs test/unit and test/conformance under Node $1, with its own better-sqlite3 build.
run_suites() {
  local version=$1 dir=$cache/node-$1
  local env=(
    PATH="$dir/bin:$PATH"
    NODE_OPTIONS="--require $root/.ci/native-addons.cjs"
    LIFEGUARD_ADDON_FROM="$addon_src/build/Release"
    LIFEGUARD_ADDON_TO="$dir/better-sqlite3/build/Release"
  )
  # The redirect works, or every SQLite test would fail with a NODE_MODULE_VERSION mismatch.
  env "${env[@]}" "$dir/bin/node" -e "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()"
  log "test/unit and test/conformance on Node $version"
  local start=$SECONDS
  env "${env[@]}" "$dir/bin/node" node_modules/vitest/vitest.mjs run test/unit test/conformance
  echo "Node $version: suites took $((SECONDS - start)) s"
}

for version in "${versions[@]}"; do
  start=$SECONDS
  install_node "$version"
  build_addon "$version"
  echo "Node $version: ready in $((SECONDS - start)) s"
  run_suites "$version"
done
