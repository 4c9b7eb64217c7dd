#!/usr/bin/env bash
# Runs node-postgres's and mysql2's own pool test suites against the real drivers and against
# lifeguard's facades, side by side. See README.md in this directory.
set -euo pipefail
exec node "$(dirname "${BASH_SOURCE[0]}")/run.mjs" "$@"
