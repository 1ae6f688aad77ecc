#!/usr/bin/env bash
# clip's main job on a built-in demo image: build a small image with umoci
# (busybox plus some files), push it to a local docker-registry on loopback,
# index it, then list and read files lazily from the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
clip() { node bin/clip.js "$@"; }

work=$(mktemp -d /tmp/clip-demo.XXXXXX)
registry_pid=""
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building a demo image with umoci"
umoci init --layout "$work/oci"
umoci new --image "$work/oci:demo"
umoci unpack --image "$work/oci:demo" "$work/bundle" >/dev/null
root="$work/bundle/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/usr/share/demo"
cp /bin/busybox "$root/bin/busybox"
for tool in sh cat ls echo sha256sum wc head; do ln -s busybox "$root/bin/$tool"; done
echo "clip demo image" > "$root/etc/motd"
head -c 48000000 /dev/urandom | base64 > "$root/usr/share/demo/big.txt"
umoci repack --image "$work/oci:demo" "$work/bundle" >/dev/null
umoci config --image "$work/oci:demo" --config.cmd /bin/sh >/dev/null

echo "== starting docker-registry on 127.0.0.1"
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
cat > "$work/registry.yml" <<YML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $work/registry } }
http: { addr: 127.0.0.1:$port }
YML
# The registry reads REGISTRY_* variables as configuration: start it without them.
(unset "${!REGISTRY_@}"; exec docker-registry serve "$work/registry.yml") >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
skopeo copy --quiet --dest-tls-verify=false "oci:$work/oci:demo" "docker://127.0.0.1:$port/demo:latest"

echo "== clip index 127.0.0.1:$port/demo:latest"
clip index "127.0.0.1:$port/demo:latest" -o "$work/demo.clip"
echo "== clip inspect"
clip inspect "$work/demo.clip"
echo "== clip ls -l /bin"
clip ls -l "$work/demo.clip" /bin | head -5
echo "== clip cat /etc/motd"
clip cat "$work/demo.clip" /etc/motd
echo "== clip cat /usr/share/demo/big.txt (read lazily) vs the original"
want=$(sha256sum < "$root/usr/share/demo/big.txt" | cut -d' ' -f1)
got=$(clip cat "$work/demo.clip" /usr/share/demo/big.txt | sha256sum | cut -d' ' -f1)
echo "original $want"
echo "via clip $got"
[ "$want" = "$got" ] && echo "demo: OK"
