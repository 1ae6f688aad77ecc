// clip inspect FILE: what an index describes.

import { Command } from 'commander';
import { loadIndex } from '../index/load.js';
import { KIND_NAMES } from '../index/types.js';
import { inspectIndex } from '../index/inspect.js';
import { formatBytes } from './format.js';

export function inspectCommand(): Command {
  return new Command('inspect')
    .description('show what a .clip file is (OCI image index, local archive, S3 archive), its source, layers, spans and counts')
    .argument('<file>', '.clip file')
    .option('--json', 'print as JSON')
    .action(async (file: string, o: { json?: boolean }) => {
      const report = inspectIndex(await loadIndex(file));
      if (o.json) {
        process.stdout.write(JSON.stringify(report, null, 2) + '\n');
        return;
      }
      const { image, counts, bytes } = report;
      const p = image.platform;
      const archive = report.kind !== 'oci';
      const platform = p.os ? `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}` : '';
      const lines = [
        `kind:       ${KIND_NAMES[report.kind]}`,
        ...(archive
          ? [
              `source:     ${image.reference}`,
              `data:       ${report.kind === 'archive' ? `embedded in ${image.location.slice('archive:'.length)}` : image.location}`,
              `digest:     ${image.manifestDigest}`,
              ...(image.configDigest ? [`config:     ${image.configDigest}`] : []),
              ...(platform ? [`platform:   ${platform}`] : []),
              `archived:   ${image.indexedAt} by ${image.indexedBy}, span size ${formatBytes(image.spanSize)}`,
            ]
          : [
              `image:      ${image.reference}`,
              `location:   ${image.location}`,
              ...(report.registry
                ? [`registry:   ${report.registry.plainHttp ? 'plain HTTP' : 'HTTPS'} (as indexed; the default for reading)`]
                : []),
              `manifest:   ${image.manifestDigest}`,
              `config:     ${image.configDigest}`,
              `platform:   ${platform}`,
              `indexed:    ${image.indexedAt} by ${image.indexedBy}, span size ${formatBytes(image.spanSize)}`,
            ]),
        `entries:    ${counts.total} (${counts.file} files, ${counts.dir} dirs, ${counts.symlink} symlinks, ` +
          `${counts.char + counts.block} devices, ${counts.fifo} fifos, ${counts.hardlinks} extra hardlinks)`,
        `bytes:      ${formatBytes(bytes.compressed)} compressed, ${formatBytes(bytes.uncompressed)} uncompressed, ${formatBytes(bytes.files)} in files`,
        `layers:`,
        ...report.layers.map(
          (l, i) =>
            `  ${i}  ${l.digest}  ${l.compression.padEnd(archive ? 12 : 4)}  ${formatBytes(l.compressedSize).padStart(10)} -> ` +
            `${formatBytes(l.uncompressedSize).padStart(10)}  ${l.spans} spans, windows ${formatBytes(l.windowBytes)}`,
        ),
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });
}
