# A GETATTR storm for bench:fuse: statx(AT_STATX_FORCE_SYNC) makes every call
# reach the filesystem (FUSE sends GETATTR even with attributes cached).
# Usage: getattr-storm.py PATH SECONDS PROCESSES -> one JSON line:
# requests per second over all processes, p50 and p99 of one call in microseconds.
import ctypes, json, os, sys, time

path, seconds, procs = sys.argv[1].encode(), float(sys.argv[2]), int(sys.argv[3])
AT_FDCWD, AT_STATX_FORCE_SYNC, STATX_BASIC_STATS = -100, 0x2000, 0x7FF


def worker(w):
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)
    statx, clock = libc.statx, time.perf_counter_ns
    lat = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(100):
            t = clock()
            if statx(AT_FDCWD, path, AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, buf) != 0:
                raise OSError(ctypes.get_errno(), 'statx failed')
            lat.append(clock() - t)
    os.write(w, (json.dumps(lat) + '\n').encode())
    os.close(w)


pipes = []
for _ in range(procs):
    r, w = os.pipe()
    if os.fork() == 0:
        os.close(r)
        worker(w)
        os._exit(0)
    os.close(w)
    pipes.append(r)
lat = []
for r in pipes:
    with os.fdopen(r) as f:
        lat += json.loads(f.read())
for _ in pipes:
    os.wait()
lat.sort()
print(json.dumps({'rps': len(lat) / seconds, 'p50': lat[len(lat) // 2] / 1000, 'p99': lat[len(lat) * 99 // 100] / 1000}))
