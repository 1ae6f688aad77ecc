#!/usr/bin/env bash
# Refuses a Node.js older than clip needs, before setup installs anything:
# undici 7 needs 20.18.1 (package.json's engines says the same), and Debian
# 12's own nodejs package is 18. Uses only bash builtins besides node itself.
set -euo pipefail
MIN=20.18.1
ADVICE="Debian 12's nodejs package is 18, too old: install Node.js 20.18.1 or later (nodejs.org or NodeSource) and run this again"

if ! command -v node >/dev/null 2>&1; then
  echo "setup: clip needs Node.js >= $MIN and there is no node on PATH. $ADVICE" >&2
  exit 1
fi
have=$(node --version 2>/dev/null || true)
if ! [[ $have =~ ^v?([0-9]+)\.([0-9]+)\.([0-9]+) ]]; then
  echo "setup: clip needs Node.js >= $MIN; cannot tell the version of $(command -v node) (it said '$have')" >&2
  exit 1
fi
# Compared as numbers, part by part (as strings 20.9 would pass for newer than 20.18).
read -r want_major want_minor want_patch <<<"${MIN//./ }"
major=$((10#${BASH_REMATCH[1]})) minor=$((10#${BASH_REMATCH[2]})) patch=$((10#${BASH_REMATCH[3]}))
if ((major < want_major || (major == want_major && (minor < want_minor || (minor == want_minor && patch < want_patch))))); then
  echo "setup: clip needs Node.js >= $MIN (undici 7 requires it); $(command -v node) is $have. $ADVICE" >&2
  exit 1
fi
