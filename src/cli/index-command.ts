// clip index IMAGE -o FILE [--push]: index an image into a .clip file, keep a
// copy in the local index store, and with --push store it in the registry.

import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_MAX_ENTRIES } from '../image/layer-entries.js';
import { DEFAULT_MAX_RATIO, DEFAULT_SPAN_SIZE, DEFAULT_WINDOW_EVERY } from '../indexer/span-size.js';
import { ClipError } from '../errors.js';
import { checkOutputFile } from '../util/output-file.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { formatBytes, parseSize } from './format.js';
import { addRegistryOptions, registryOptions } from './registry-options.js';
import type { RegistryOptions } from '../oci/types.js';
import type { IndexOptions, IndexSummary } from '../indexer/index-image.js';
import { parseTraceCmd } from '../trace/command.js';
import type { TracedSummary } from '../trace/trace-image.js';
import { interruptOnSignals } from './interrupt.js';
import { requireRoot } from './require-root.js';

/** As trace-image.ts (not imported here: it loads the daemon client). */
const DEFAULT_TRACE_TIMEOUT_S = 30;

function parseCount(s: string): number {
  if (!/^[1-9]\d*$/.test(s.trim()) || !Number.isSafeInteger(Number(s)))
    throw new InvalidArgumentError(`bad count "${s}": expected a positive whole number`);
  return Number(s);
}

export function indexCommand(): Command {
  const cmd = new Command('index')
    .description('index an image (registry reference or oci:DIR[:TAG]) into a metadata-only .clip file')
    .argument('<image>', 'image reference, e.g. alpine:3.20, localhost:5000/app@sha256:..., oci:./layout:tag')
    .option('-o, --output <file>', 'where to write the .clip index (-: to stdout, the summary then goes to stderr); optional with --push')
    .option('--push', "store the index in the image's repository as an OCI artifact (a referrer of the image manifest)")
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform image (default: this host)')
    .option(
      '--span-size <bytes>',
      `minimum uncompressed bytes between checkpoints: what one read fetches at least (default ${formatBytes(DEFAULT_SPAN_SIZE)})`,
      parseSize,
    )
    .option(
      '--window-every <bytes>',
      `keep the 32 KiB window of checkpoints this far apart only; the others resume from the span before (default ${formatBytes(DEFAULT_WINDOW_EVERY)})`,
      parseSize,
    )
    .option(
      '--profile <file>',
      'start-up profile (clip mount --record-profile, same --span-size): keep windows where its reads begin and ship it in the index; repeat to merge several',
      (file: string, files: string[] = []) => [...files, file],
    )
    .option(
      '--trace',
      "run the image's command on the fresh index (runc, no network) and ship what it reads as the index's start-up profile",
    )
    .option('--trace-cmd <json>', 'with --trace: the command to run instead of Entrypoint + Cmd, as a JSON array (exec form)')
    .option(
      '--trace-timeout <seconds>',
      `with --trace: stop the command after this long; what it read until then is the profile (default ${DEFAULT_TRACE_TIMEOUT_S})`,
      parseSeconds,
    )
    .option(
      '--max-ratio <n>',
      `refuse a layer that inflates to more than max(256 MiB, N x its compressed size), a gzip bomb; 0: no bound (default ${DEFAULT_MAX_RATIO})`,
      parseRatio,
    )
    .option(
      '--max-entries <n>',
      `most tar entries the layers may hold together, a bound on memory (default ${DEFAULT_MAX_ENTRIES})`,
      parseCount,
    )
    .option('--json', 'print the summary as JSON');
  addRegistryOptions(cmd);
  return cmd.action(async (image: string, o) => {
    // Checked before any work: a bad command must not cost an indexing run first.
    if (!o.trace && (o.traceCmd !== undefined || o.traceTimeout !== undefined))
      throw new ClipError('BAD_ARGUMENT', '--trace-cmd and --trace-timeout go with --trace');
    const traceCmd = o.traceCmd !== undefined ? parseTraceCmd(o.traceCmd) : undefined;
    if (o.trace) requireRoot('index --trace');
    if (o.output === undefined && !o.push) throw new ClipError('BAD_ARGUMENT', 'missing -o FILE (or --push)');
    const toStdout = o.output === '-';
    if (toStdout && process.stdout.isTTY) {
      throw new ClipError(
        'BAD_ARGUMENT',
        'refusing to write a binary .clip index to a terminal: redirect stdout (-o - > FILE) or give a file',
      );
    }
    // Before any work: `-o /dev/null` must not replace the device after a long indexing run.
    if (!toStdout && o.output !== undefined) await checkOutputFile(o.output);
    const { defaultDataDir, storeIndexBytes } = await import('../registry-index/local-store.js');
    const dataDir = defaultDataDir();
    let encoded: Buffer | undefined;
    // With the index on stdout, the summary goes to stderr: stdout stays the index's bytes.
    const report = toStdout ? process.stderr : process.stdout;
    // Loaded here, not at start-up: the registry client is most of clip's start-up time.
    const [{ indexImage }, { indexTraced }, { byteProgress }] = await Promise.all([
      import('../indexer/index-image.js'),
      import('../trace/trace-image.js'),
      import('./progress.js'),
    ]);
    const progress = byteProgress('indexing');
    let summary: IndexSummary & { trace?: TracedSummary['trace']; pushed?: string };
    // Once: --password-stdin reads stdin, which a second call would find empty (the push needs the password too).
    const registry = await registryOptions(o);
    try {
      const opts: IndexOptions = {
        ...registry,
        output: toStdout ? '(stdout)' : (o.output ?? '(local index store)'),
        // The encoded index goes to -o and into the local store (keyed by the manifest digest, known only once indexed).
        write: async (data: Buffer) => {
          encoded = data;
          if (toStdout) await writeStdout(data);
          else if (o.output !== undefined) await writeFileAtomic(o.output, data);
        },
        ...(o.spanSize !== undefined ? { spanSize: o.spanSize } : {}),
        ...(o.windowEvery !== undefined ? { windowEvery: o.windowEvery } : {}),
        ...(o.profile !== undefined ? { profile: o.profile } : {}),
        ...(o.maxRatio !== undefined ? { maxRatio: o.maxRatio } : {}),
        ...(o.maxEntries !== undefined ? { maxEntries: o.maxEntries } : {}),
        onProgress: (read, total) => progress.update(read, total),
      };
      summary = o.trace
        ? await interruptOnSignals().run((signal) =>
            indexTraced(image, opts, {
              ...(traceCmd ? { command: traceCmd } : {}),
              ...(o.traceTimeout !== undefined ? { timeoutSeconds: o.traceTimeout } : {}),
              output: process.stderr,
              signal,
            }),
          )
        : await indexImage(image, opts);
    } finally {
      progress.stop();
    }
    const stored = await storeLocally(dataDir, summary.manifestDigest, encoded!, storeIndexBytes, o.push === true);
    if (o.output === undefined) summary.output = stored ?? '(not written)';
    if (o.push) {
      const { pushIndex } = await import('../registry-index/push-index.js');
      const pushed = await pushIndex(stored!, {
        registry: withoutPlatform(registry),
        ...(o.windowEvery !== undefined ? { windowEvery: o.windowEvery } : {}),
      });
      summary.pushed = pushed.reference;
    }
    if (o.json) {
      report.write(JSON.stringify(summary, null, 2) + '\n');
      return;
    }
    const pct = ((100 * summary.indexBytes) / Math.max(1, summary.compressedBytes)).toFixed(2);
    report.write(
      [
        `indexed ${summary.reference} (${summary.manifestDigest})`,
        `  layers:  ${summary.layers} (${formatBytes(summary.compressedBytes)} compressed, ${formatBytes(summary.uncompressedBytes)} uncompressed)`,
        `  entries: ${summary.entries} (${summary.files} files, ${summary.directories} directories)`,
        `  spans:   ${summary.checkpoints}`,
        `  index:   ${summary.output}, ${formatBytes(summary.indexBytes)} (${pct}% of the compressed image)`,
        ...(summary.trace ? [traceLine(summary.trace)] : []),
        ...(summary.pushed ? [`  pushed:  ${summary.pushed}`] : []),
        `  time:    ${summary.seconds.toFixed(2)} s`,
      ].join('\n') + '\n',
    );
  });
}

/**
 * Keeps a copy in the local index store. Needed for --push (it pushes the stored
 * file); otherwise a store that cannot be written (not root) costs only a warning.
 */
async function storeLocally(
  dataDir: string,
  digest: string,
  data: Buffer,
  store: (dataDir: string, digest: string, data: Buffer) => Promise<string>,
  required: boolean,
): Promise<string | undefined> {
  try {
    return await store(dataDir, digest, data);
  } catch (e) {
    if (required || !(e instanceof ClipError && e.code === 'IO')) throw e;
    process.stderr.write(`clip: warning: the index was not kept in the local index store (${e.message})\n`);
    return undefined;
  }
}

/** Resolves once `data` is handed to stdout (an EPIPE rejects: main.ts treats it as the reader leaving). */
function writeStdout(data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(data, (e) => (e ? reject(e) : resolve())));
}

function traceLine(trace: TracedSummary['trace']): string {
  const ended = trace.timedOut ? 'stopped at the timeout' : trace.code === null ? 'stopped' : `exited ${trace.code}`;
  return `  trace:   ${trace.spans} spans read, first read first, shipped in the index (the command ${ended}, ${trace.seconds.toFixed(2)} s)`;
}

function parseSeconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 86_400)
    throw new InvalidArgumentError(`bad timeout "${value}": expected seconds, more than 0 and at most 86400`);
  return n;
}

function parseRatio(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError(`bad ratio "${value}": expected a number >= 0 (0: no bound)`);
  return n;
}

/** The registry settings without the platform (a push names its manifest by digest). */
function withoutPlatform(r: RegistryOptions): RegistryOptions {
  const { platform: _platform, ...rest } = r;
  return rest;
}
