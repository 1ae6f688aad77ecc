#!/usr/bin/env bash
# clip's main job on a built-in demo image: build a small image with umoci
# (busybox plus some files), push it to a local docker-registry on loopback,
# index it, list and read files lazily from the registry, mount it as a
# writable container rootfs and run a container on it with runc.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
clip() { node bin/clip.js "$@"; }

work=$(mktemp -d /tmp/clip-demo.XXXXXX)
registry_pid=""
export CLIP_STATE_DIR="$work/state" CLIP_DATA_DIR="$work/data"
cleanup() {
  [ -d "$work/rootfs" ] && node bin/clip.js umount "$work/rootfs" 2>/dev/null || true
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building a demo image with umoci"
umoci init --layout "$work/oci"
umoci new --image "$work/oci:demo"
umoci unpack --image "$work/oci:demo" "$work/bundle" >/dev/null
root="$work/bundle/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/usr/share/demo" "$root/tmp"
chmod 1777 "$root/tmp"
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
[ "$want" = "$got" ]

echo "== clip mount --rootfs (overlayfs over the lazy read-only image) and runc run"
mkdir -p "$work/rootfs" "$work/bundle-run"
clip mount "$work/demo.clip" --rootfs "$work/rootfs"
(cd "$work/bundle-run" && runc spec)
node -e '
  const fs = require("fs"); const f = process.argv[1]; const spec = JSON.parse(fs.readFileSync(f));
  spec.root = { path: process.argv[2], readonly: false }; spec.process.terminal = false;
  spec.process.args = ["/bin/sh", "-c", "cat /etc/motd; ls /bin | wc -l; echo hello > /tmp/written; head -c 64 /usr/share/demo/big.txt; echo"];
  fs.writeFileSync(f, JSON.stringify(spec));' "$work/bundle-run/config.json" "$work/rootfs"
runc --root "$work/runc" run --bundle "$work/bundle-run" clip-demo-$$
echo "the container's write is in the overlay's upper dir: $(cat "$work"/data/rootfs/*/upper/tmp/written)"
clip umount "$work/rootfs"
echo "demo: OK"
