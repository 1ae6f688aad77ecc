#!/usr/bin/env bash
# Set up (Debian packages, npm ci, build) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec npm test --silent
