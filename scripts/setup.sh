#!/usr/bin/env bash
# Installs what clip's demo and tests need on a fresh Debian 12 machine:
# Debian packages (only those missing) and the npm dependencies, then builds.
# Node.js itself must be there already, new enough (check-node.sh says so first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/check-node.sh

packages=(docker-registry skopeo umoci runc fuse-overlayfs archivemount busybox-static apache2-utils attr libcap2-bin zstd tar gzip curl debootstrap squashfs-tools squashfuse openssl containerd runsc python3)  # debootstrap: images of bench:coldstart; squashfs-tools, squashfuse: bench:archive; openssl: the TLS registries of the networking tests; containerd (ctr too): the snapshotter and CRI tests; runsc: the gVisor tests; python3: bench:fuse's GETATTR storm
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian registry package starts a service on :5000; clip's demo and tests
# run their own on random loopback ports and never need it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npx tsc -p .
