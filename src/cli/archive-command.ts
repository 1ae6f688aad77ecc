// clip archive SOURCE -o FILE [--s3 s3://BUCKET/KEY]: pack a directory, an
// image or a .clip file into a self-contained archive, or upload its data to
// S3 and keep a small index.

import { Command, InvalidArgumentError } from 'commander';
import { ClipError } from '../errors.js';
import { checkOutputFile } from '../util/output-file.js';
import { formatBytes, parseSize } from './format.js';
import { addRegistryOptions, registryOptions } from './registry-options.js';

function parseLevel(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0 || n > 9) throw new InvalidArgumentError(`bad level "${s}": expected 0-9`);
  return n;
}

export function archiveCommand(): Command {
  const cmd = new Command('archive')
    .description(
      'pack a directory, an image or a .clip file into a self-contained .clip archive (data embedded, or uploaded to S3 with --s3)',
    )
    .argument('<source>', 'directory, image reference (alpine:3.20, oci:DIR[:TAG]) or .clip file')
    .requiredOption(
      '-o, --output <file>',
      'the .clip file to write (with --s3: the small index that points at the data); not - (stdout): an archive is written beside its path and renamed into place',
    )
    .option('--s3 <url>', 'upload the data to s3://BUCKET/KEY (multipart; a failed upload resumes when the command is run again)')
    .option('--endpoint <url>', 'S3-compatible endpoint (default: AWS, or AWS_ENDPOINT_URL_S3)')
    .option('--region <region>', 'S3 region (default: AWS_REGION, the profile, else us-east-1)')
    .option(
      '--span-size <bytes>',
      'uncompressed bytes per span, the unit of reading and verifying (default 1 MiB; with --s3 4 MiB)',
      parseSize,
    )
    .option('--level <0-9>', 'gzip compression level (default 6)', parseLevel)
    .option('--no-xattrs', 'do not read extended attributes of a directory (no getfattr needed)')
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform image (default: this host)')
    .option('--json', 'print the summary as JSON');
  addRegistryOptions(cmd);
  return cmd.action(async (source: string, o) => {
    if (o.output === '-') {
      // The header is written last (it needs the data's length) and an S3 upload resumes from OUTPUT.s3-upload/: both need a file.
      throw new ClipError(
        'BAD_ARGUMENT',
        'clip archive cannot write to stdout (-o -): an archive is written next to its output file and renamed into place; give a file path',
      );
    }
    // Before any work: `-o /dev/null` must not replace the device after a long archiving run.
    await checkOutputFile(o.output);
    // Loaded here, not at start-up (start-up time matters for the other commands).
    const [{ createArchive }, { byteProgress }, { interruptOnSignals }] = await Promise.all([
      import('../archive/create-archive.js'),
      import('./progress.js'),
      import('./interrupt.js'),
    ]);
    const interrupt = interruptOnSignals();
    let phase = '';
    let progress = byteProgress('archiving');
    const summary = await (async () => {
      try {
        return await interrupt.run(async (signal) =>
          createArchive(source, {
            ...(await registryOptions(o)),
            signal,
            output: o.output,
            ...(o.s3 !== undefined ? { s3: o.s3 } : {}),
            ...(o.endpoint !== undefined ? { endpoint: o.endpoint } : {}),
            ...(o.region !== undefined ? { region: o.region } : {}),
            ...(o.spanSize !== undefined ? { spanSize: o.spanSize } : {}),
            ...(o.level !== undefined ? { level: o.level } : {}),
            xattrs: o.xattrs !== false,
            onSkip: (s) => process.stderr.write(`clip: skipped ${s.path}: ${s.reason}\n`),
            onResume: (staging) => process.stderr.write(`clip: resuming the interrupted upload staged in ${staging}\n`),
            onProgress: (p, done, total) => {
              if (p !== phase) {
                progress.stop();
                progress = byteProgress(p);
                phase = p;
              }
              progress.update(done, total);
            },
          }),
        );
      } finally {
        progress.stop();
      }
    })();
    if (o.json) {
      process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      return;
    }
    const ratio = ((100 * summary.dataBytes) / Math.max(1, summary.uncompressedBytes)).toFixed(1);
    const lines = [
      `archived ${summary.source} (${summary.kind === 's3' ? 'S3 archive' : 'local archive'})`,
      `  entries: ${summary.entries} (${summary.files} files, ${formatBytes(summary.fileBytes)})${summary.skipped.length ? `, ${summary.skipped.length} skipped` : ''}`,
      `  data:    ${formatBytes(summary.dataBytes)} gzip (${ratio}% of ${formatBytes(summary.uncompressedBytes)} tar), ${summary.spans} spans`,
      summary.kind === 's3'
        ? `  s3:      ${summary.location} (${summary.uploadedParts} parts uploaded${summary.resumedParts ? `, ${summary.resumedParts} kept from the interrupted run` : ''})`
        : undefined,
      `  output:  ${summary.output}${summary.kind === 's3' ? `, ${formatBytes(summary.indexBytes)} index` : `, index ${formatBytes(summary.indexBytes)} + data`}`,
      `  time:    ${summary.seconds.toFixed(2)} s`,
    ];
    process.stdout.write(lines.filter((l) => l !== undefined).join('\n') + '\n');
  });
}
