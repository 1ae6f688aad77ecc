// clip inspect FILE: what an index describes.

import { Command } from 'commander';
import { loadIndex } from '../index/load.js';
import { inspectIndex } from '../inspect.js';
import { formatBytes } from './format.js';

export function inspectCommand(): Command {
  return new Command('inspect')
    .description('show the image, layers, spans and counts recorded in a .clip index')
    .argument('<file>', '.clip index')
    .option('--json', 'print as JSON')
    .action(async (file: string, o: { json?: boolean }) => {
      const report = inspectIndex(await loadIndex(file));
      if (o.json) {
        process.stdout.write(JSON.stringify(report, null, 2) + '\n');
        return;
      }
      const { image, counts, bytes } = report;
      const p = image.platform;
      const lines = [
        `kind:       ${report.kind} image index`,
        `image:      ${image.reference}`,
        `location:   ${image.location}`,
        `manifest:   ${image.manifestDigest}`,
        `config:     ${image.configDigest}`,
        `platform:   ${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`,
        `indexed:    ${image.indexedAt} by ${image.indexedBy}, span size ${formatBytes(image.spanSize)}`,
        `entries:    ${counts.total} (${counts.file} files, ${counts.dir} dirs, ${counts.symlink} symlinks, ` +
          `${counts.char + counts.block} devices, ${counts.fifo} fifos, ${counts.hardlinks} extra hardlinks)`,
        `bytes:      ${formatBytes(bytes.compressed)} compressed, ${formatBytes(bytes.uncompressed)} uncompressed, ${formatBytes(bytes.files)} in files`,
        `layers:`,
        ...report.layers.map(
          (l, i) =>
            `  ${i}  ${l.digest}  ${l.compression.padEnd(4)}  ${formatBytes(l.compressedSize).padStart(10)} -> ` +
            `${formatBytes(l.uncompressedSize).padStart(10)}  ${l.spans} spans, windows ${formatBytes(l.windowBytes)}`,
        ),
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });
}
