// The daemon's settings (src/daemon/config.ts) and `clip daemon --check-config`:
// defaults equal to today's `clip mount`, file values, the environment and
// flags overriding in that order, every key's bad value and unknown keys
// named with file and line, files that are not TOML, and the CLI's exits.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_MEMORY_CACHE } from '../src/content/layer-reader.js';
import { CONFIG_KEYS, DEFAULT_KERNEL_READAHEAD, loadDaemonConfig, type DaemonFlags, type LoadOptions } from '../src/daemon/config.js';
import { isClipError } from '../src/errors.js';
import { DEFAULT_CACHE_BYTES, DEFAULT_PREFETCH_RATE } from '../src/mount/settings.js';
import { runClip } from './helpers/cli.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('daemon config', () => {
  let dir: string;
  let n = 0;
  /** No default file and no environment: only what a test gives counts. */
  let isolated: LoadOptions;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'clip-daemon-config-'));
    isolated = { env: {}, defaultPath: path.join(dir, 'absent.toml') };
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function file(text: string | Buffer): Promise<string> {
    const p = path.join(dir, `c${n++}.toml`);
    await writeFile(p, text);
    return p;
  }

  async function loadError(flags: DaemonFlags, opts: LoadOptions = isolated): Promise<string> {
    try {
      await loadDaemonConfig(flags, opts);
    } catch (e) {
      assert.ok(isClipError(e), `a ClipError, not ${String(e)}`);
      return e.message;
    }
    assert.fail('expected an error');
  }

  it('defaults are those of clip mount', async () => {
    const l = await loadDaemonConfig({}, isolated);
    assert.equal(l.file, undefined);
    assert.deepEqual(l.config, {
      stateDir: '/run/clip',
      dataDir: '/var/lib/clip',
      cacheDir: '/var/lib/clip/cache',
      cacheBytes: DEFAULT_CACHE_BYTES,
      memoryCacheBytes: DEFAULT_MEMORY_CACHE,
      logLevel: 'info',
      logFormat: 'json',
      prefetch: false,
      prefetchRate: DEFAULT_PREFETCH_RATE,
      readAhead: true,
      kernelReadahead: DEFAULT_KERNEL_READAHEAD,
      hostsDir: '/etc/clip/certs.d',
      snapshotterSocket: '/run/clip/snapshotter.sock',
    });
  });

  it('reads the default file when no --config is given, and every key of a file', async () => {
    const p = await file(
      [
        '# every key',
        'state_dir = "/run/clip-t"',
        'data_dir = "/srv/clip"',
        'cache_dir = "/srv/cache"',
        'cache_size = "2G"',
        'memory_cache_size = 1048576',
        'log_level = "debug"',
        'log_format = "text"',
        'metrics_addr = "127.0.0.1:9100"',
        'prefetch = true',
        'prefetch_rate = "512KiB"',
        'read_ahead = false',
        'kernel_readahead = "4M"',
        'hosts_dir = "/srv/certs.d"',
        'snapshot_socket = "/run/clip-t/snap.sock"',
      ].join('\n'),
    );
    const l = await loadDaemonConfig({}, { env: {}, defaultPath: p });
    assert.equal(l.file, p);
    assert.deepEqual(l.config, {
      stateDir: '/run/clip-t',
      dataDir: '/srv/clip',
      cacheDir: '/srv/cache',
      cacheBytes: 2 * 1024 ** 3,
      memoryCacheBytes: 1048576,
      logLevel: 'debug',
      logFormat: 'text',
      metricsAddr: '127.0.0.1:9100',
      prefetch: true,
      prefetchRate: 512 * 1024,
      readAhead: false,
      kernelReadahead: 4 * 1024 ** 2,
      hostsDir: '/srv/certs.d',
      snapshotterSocket: '/run/clip-t/snap.sock',
    });
  });

  it('cache_dir follows data_dir unless set', async () => {
    const l = await loadDaemonConfig({ config: await file('data_dir = "/srv/clip"\n') }, isolated);
    assert.equal(l.config.cacheDir, '/srv/clip/cache');
  });

  it('the environment overrides the file, flags override both', async () => {
    const p = await file(
      'state_dir = "/run/a"\ndata_dir = "/srv/a"\ncache_size = "1G"\nmetrics_addr = "127.0.0.1:9100"\nprefetch = true\n',
    );
    const env = { CLIP_STATE_DIR: '/run/b', CLIP_DATA_DIR: '/srv/b' };
    const fromEnv = await loadDaemonConfig({ config: p }, { env });
    assert.equal(fromEnv.config.stateDir, '/run/b');
    assert.equal(fromEnv.config.dataDir, '/srv/b');
    assert.equal(fromEnv.config.cacheBytes, 1024 ** 3, 'a key neither overrides stays the file’s');
    const fromFlags = await loadDaemonConfig(
      { config: p, stateDir: '/run/c', dataDir: 'rel', cacheSize: '3M', metricsAddr: '', prefetch: false, logLevel: 'warn' },
      { env },
    );
    assert.equal(fromFlags.config.stateDir, '/run/c');
    assert.equal(fromFlags.config.dataDir, path.resolve('rel'), 'a relative flag is taken from the working directory');
    assert.equal(fromFlags.config.cacheBytes, 3 * 1024 ** 2);
    assert.equal(fromFlags.config.metricsAddr, undefined, '--metrics-addr "" turns off the file’s metrics');
    assert.equal(fromFlags.config.prefetch, false, '--no-prefetch wins over prefetch = true');
    assert.equal(fromFlags.config.logLevel, 'warn');
  });

  // One bad value per key, each a different way to be wrong: the message names the key, the file and the line.
  const badValues: Record<string, string[]> = {
    state_dir: ['"relative/dir"', '""', '7'],
    data_dir: ['["/a"]', '"dir"'],
    cache_dir: ['true', '"a\\u0000b"'],
    cache_size: ['"10X"', '0', '-5', '1.5', '"99999999999G"', 'true'],
    memory_cache_size: ['"lots"', '0', '{ a = 1 }'],
    log_level: ['"loud"', '3'],
    log_format: ['"xml"', 'false'],
    metrics_addr: ['"localhost"', '"127.0.0.1:0"', '"127.0.0.1:70000"', '9100'],
    prefetch: ['"yes"', '1'],
    prefetch_rate: ['"fast"', '0', '1979-05-27'],
    read_ahead: ['"no"', '0'],
    kernel_readahead: ['"big"', '0', 'false'],
    hosts_dir: ['"certs.d"', '5'],
    snapshot_socket: ['"snap.sock"', '1'],
  };
  it('has a bad-value case for every key', () => {
    assert.deepEqual(Object.keys(badValues).sort(), CONFIG_KEYS.map((k) => k.key).sort());
  });
  for (const [key, values] of Object.entries(badValues)) {
    for (const v of values) {
      it(`names ${key} for ${key} = ${v}`, async () => {
        const p = await file(`# line 1\n\n${key} = ${v}\n`);
        const msg = await loadError({ config: p });
        assert.ok(msg.startsWith(`config ${p}:3: ${key}: `), msg);
      });
    }
  }

  it('names the flag for a bad flag value', async () => {
    assert.match(await loadError({ cacheSize: '12 parsecs' }), /^--cache-size: bad size "12 parsecs"/);
    assert.match(await loadError({ memoryCacheSize: '0' }), /^--memory-cache-size: /);
    assert.match(await loadError({ logLevel: 'loud' }), /^--log-level: expected one of trace, debug, info, warn, error, got "loud"/);
    assert.match(await loadError({ logFormat: 'xml' }), /^--log-format: /);
    assert.match(await loadError({ metricsAddr: 'nope' }), /^--metrics-addr: /);
    assert.match(await loadError({ prefetchRate: '-1' }), /^--prefetch-rate: /);
    assert.match(await loadError({ stateDir: '' }), /^--state-dir: /);
    assert.match(await loadError({}, { env: { CLIP_STATE_DIR: '' }, defaultPath: isolated.defaultPath! }), /^\$CLIP_STATE_DIR: /);
  });

  it('names unknown keys and tables, with their line', async () => {
    const typo = await file('log_level = "info"\ncache_siz = "1G"\n');
    assert.match(await loadError({ config: typo }), new RegExp(`^config ${typo}:2: cache_siz: unknown key \\(known keys: state_dir, `));
    const table = await file('log_level = "info"\n\n[log]\nlevel = "debug"\n');
    assert.match(await loadError({ config: table }), new RegExp(`^config ${table}:3: log: unknown key`));
    const dotted = await file('cache.size = 5\n');
    assert.match(await loadError({ config: dotted }), new RegExp(`^config ${dotted}:1: cache: unknown key`));
    const escape = await file('"\\u001b[2J" = 1\n');
    assert.equal(
      await loadError({ config: escape }),
      `config ${escape}: "\\u001b[2J": unknown key (known keys: ${CONFIG_KEYS.map((k) => k.key).join(', ')})`,
      'a control character in a key is shown escaped',
    );
    const proto = await file('__proto__ = 1\n');
    assert.match(await loadError({ config: proto }), /__proto__: unknown key/);
  });

  it('a file that is not TOML is refused with its line and column', async () => {
    const p = await file('log_level = "info"\nthis is not toml\n');
    assert.match(await loadError({ config: p }), new RegExp(`^config ${p}:2:\\d+: not valid TOML: `));
    const dup = await file('log_level = "info"\nlog_level = "debug"\n');
    assert.match(await loadError({ config: dup }), new RegExp(`^config ${dup}:2:\\d+: not valid TOML: `));
    const binary = await file(Buffer.from([0x6c, 0x3d, 0xff, 0xfe, 0x0a]));
    assert.equal(await loadError({ config: binary }), `config ${binary}: not valid TOML: not UTF-8 text`);
    const big = await file(Buffer.alloc(2 * 1024 * 1024, 0x23)); // all '#': valid TOML, but no config is that big
    assert.match(await loadError({ config: big }), /more than 1048576 bytes/);
  });

  it('a missing --config file is an error, a missing default file is not', async () => {
    const missing = path.join(dir, 'nope.toml');
    assert.equal(await loadError({ config: missing }), `cannot read config ${missing}: does not exist`);
    assert.match(await loadError({ config: dir }), /is a directory/);
    const broken = await file('= 1\n');
    assert.match(await loadError({}, { env: {}, defaultPath: broken }), /not valid TOML/, 'a default file that exists is checked');
  });

  describe('clip daemon through the CLI', () => {
    const env = { CLIP_STATE_DIR: '/run/clip-config-test', CLIP_DATA_DIR: '/var/lib/clip-config-test' };

    it('--json without --check-config is refused before anything starts', async () => {
      const r = await runClip(['daemon', '--json'], { env });
      assert.equal(r.code, 1);
      assert.equal(r.stderr, 'clip: --json goes with --check-config\n');
      assert.equal(r.stdout.length, 0);
    });

    it('--check-config prints the effective settings as TOML that gives them back', async () => {
      const p = await file('cache_size = "1G"\nprefetch = true\n');
      const r = await runClip(['daemon', '--check-config', '--config', p, '--log-level', 'debug'], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      const text = r.stdout.toString();
      assert.match(text, new RegExp(`^# effective settings of clip daemon \\(from ${p}\\)\n`));
      assert.match(text, /^cache_size = 1073741824 {2}# 1\.0 GiB$/m);
      assert.match(text, /^log_level = "debug"$/m);
      assert.match(text, /^state_dir = "\/run\/clip-config-test"$/m);
      const again = await loadDaemonConfig({ config: await file(text) }, isolated);
      const direct = await loadDaemonConfig({ config: p, logLevel: 'debug' }, { env });
      assert.deepEqual(again.config, direct.config);
    });

    it('--check-config --json', async () => {
      const p = await file('metrics_addr = "127.0.0.1:9200"\n');
      const r = await runClip(['daemon', '--check-config', '--json', '--config', p, '--cache-size', '4M', '--no-prefetch'], { env });
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout.toString());
      assert.equal(j.file, p);
      assert.deepEqual(j.settings, {
        state_dir: '/run/clip-config-test',
        data_dir: '/var/lib/clip-config-test',
        cache_dir: '/var/lib/clip-config-test/cache',
        cache_size: 4 * 1024 ** 2,
        memory_cache_size: DEFAULT_MEMORY_CACHE,
        log_level: 'info',
        log_format: 'json',
        metrics_addr: '127.0.0.1:9200',
        prefetch: false,
        prefetch_rate: DEFAULT_PREFETCH_RATE,
        read_ahead: true,
        kernel_readahead: DEFAULT_KERNEL_READAHEAD,
        hosts_dir: '/etc/clip/certs.d',
        snapshot_socket: '/run/clip-config-test/snapshotter.sock',
      });
    });

    it('a bad config exits 1 with one line naming the key, and prints nothing', async () => {
      const p = await file('log_format = "xml"\n');
      const r = await runClip(['daemon', '--check-config', '--config', p], { env });
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `clip: config ${p}:1: log_format: expected one of json, text, got "xml"\n`);
      assert.equal(r.stdout.length, 0);
      const flag = await runClip(['daemon', '--check-config', '--cache-size', 'huge'], { env });
      assert.equal(flag.code, 1);
      assert.match(flag.stderr, /^clip: --cache-size: bad size "huge": [^\n]*\n$/);
      const toml = await runClip(['daemon', '--check-config', '--config', await file('[[[\n')], { env });
      assert.equal(toml.code, 1);
      assert.match(toml.stderr, /^clip: config .*:1:\d+: not valid TOML: [^\n]*\n$/);
    });
  });

  it('the README lists every key with its flag and default', async () => {
    const readme = await readFile(path.join(REPO, 'README.md'), 'utf8');
    for (const k of CONFIG_KEYS) {
      const row = readme.split('\n').find((l) => new RegExp(`^\\|\\s*\`${k.key}\`\\s*\\|\\s*\`${k.flag}\``).test(l));
      assert.ok(row, `README row for ${k.key}`);
      const shown = k.defaultText.replace(/^"(.*)" \(none\)$/, '');
      for (const word of shown.split(/[ ,]+/).filter((w) => w.length > 2 && w !== 'else'))
        assert.ok(row.includes(word), `${k.key}: default ${word} in ${row}`);
    }
  });

  it('the systemd unit is Type=notify, runs clip daemon and passes systemd-analyze verify', async () => {
    const unit = await readFile(path.join(REPO, 'contrib/systemd/clip.service'), 'utf8');
    assert.match(unit, /^Type=notify$/m);
    assert.match(unit, /^NotifyAccess=all$/m, 'systemd-notify is a child process of the daemon');
    assert.match(unit, /^ExecStart=\/usr\/bin\/clip daemon$/m);
    // verify wants the binary to exist: point it at one that does, the rest is checked as shipped.
    const copy = path.join(dir, 'clip.service');
    await writeFile(copy, unit.replace('/usr/bin/clip daemon', `${process.execPath} daemon`));
    const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'no warnings');
  });
});
