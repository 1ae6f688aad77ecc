// Turns archive entries into a tar stream: the first name of an inode
// carries its bytes, later names become hard links to it; a file that
// cannot be opened or read is reported and left out (with any hard links to
// it written as the file instead; one that fails after its header was written
// is zero-filled and dropped from the tree); a file whose size changed while
// it was read is cut or zero-padded to the size its header promised, and
// reported.

import { ClipError } from '../errors.js';
import { BLOCK_SIZE, encodeHeader, END_OF_ARCHIVE, padding, tarName, type HeaderFields } from '../tar/header-writer.js';
import type { ArchiveEntry, SkipListener } from './types.js';

const ZEROS = Buffer.alloc(BLOCK_SIZE);

function fields(e: ArchiveEntry): HeaderFields {
  const h: HeaderFields = {
    name: tarName(e.path, e.type),
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: 0,
    mtime: e.mtime,
    devmajor: e.devmajor,
    devminor: e.devminor,
  };
  if (e.atime) h.atime = e.atime;
  if (e.ctime) h.ctime = e.ctime;
  if (e.type === 'symlink') h.linkname = e.target ?? '';
  if (e.xattrs && e.xattrs.size > 0) h.xattrs = e.xattrs;
  return h;
}

export interface TarStreamOptions {
  onSkip?: SkipListener;
  /**
   * Told of a file that failed after its header was written: its bytes in the
   * tar are zeros, and the tree built from the tar must leave it out.
   */
  onDropped?: (path: string) => void;
  /** Told of file bytes as they are read (progress). */
  onFileBytes?: (n: number) => void;
}

/** The code of a read error (EIO, EACCES, ...), else its message. */
function errorName(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message ?? String(err);
}

/** One async iterator over sync or async chunks. */
async function* readAll(chunks: AsyncIterable<Buffer> | Iterable<Buffer>): AsyncGenerator<Buffer> {
  yield* chunks;
}

/** The tar stream of `entries`, in chunks (file data in the chunks its source read). */
export async function* tarStream(
  entries: AsyncIterable<ArchiveEntry> | Iterable<ArchiveEntry>,
  opts: TarStreamOptions = {},
): AsyncGenerator<Buffer> {
  const written = new Map<string, string>();
  for await (const e of entries) {
    const first = e.linkKey === undefined ? undefined : written.get(e.linkKey);
    if (first !== undefined) {
      const link = { ...fields(e), type: 'hardlink' as const, linkname: first };
      delete link.xattrs; // the inode's xattrs travel with its first name
      yield encodeHeader(link);
      continue;
    }
    if (e.type !== 'file') {
      yield encodeHeader(fields(e));
    } else {
      if (!e.open) throw new ClipError('BAD_ARGUMENT', `file ${e.path} has no data source`);
      let data;
      try {
        data = await e.open();
      } catch (err) {
        opts.onSkip?.({ path: e.path, reason: `cannot read it (${errorName(err)})` });
        continue;
      }
      try {
        const chunks = readAll(data.chunks);
        // The first read comes before the header: a file that cannot be read at all is left out cleanly.
        let next: IteratorResult<Buffer> | undefined;
        try {
          next = data.size > 0 ? await chunks.next() : undefined;
        } catch (err) {
          if (err instanceof ClipError) throw err; // a source that failed (registry, archive data), not one file
          opts.onSkip?.({ path: e.path, reason: `cannot read it (${errorName(err)})` });
          continue;
        }
        yield encodeHeader({ ...fields(e), size: data.size });
        let left = data.size;
        let failed: unknown;
        while (next !== undefined && !next.done && left > 0) {
          const chunk = next.value;
          const part = chunk.length <= left ? chunk : chunk.subarray(0, left);
          left -= part.length;
          opts.onFileBytes?.(part.length);
          yield part;
          if (left === 0) break;
          try {
            next = await chunks.next();
          } catch (err) {
            if (err instanceof ClipError) throw err;
            failed = err;
            break;
          }
        }
        if (failed !== undefined) {
          // Its header is out: fill its place with zeros, and leave it out of the tree.
          opts.onDropped?.(e.path);
          opts.onSkip?.({ path: e.path, reason: `cannot read it (${errorName(failed)} after ${data.size - left} of ${data.size} bytes)` });
        } else if (left > 0) {
          opts.onSkip?.({ path: e.path, reason: `it shrank while being archived: the last ${left} bytes are zeros` });
        }
        for (; left > 0; left -= Math.min(left, ZEROS.length)) yield left >= ZEROS.length ? ZEROS : ZEROS.subarray(0, left);
        const pad = padding(data.size);
        if (pad > 0) yield ZEROS.subarray(0, pad);
        if (failed !== undefined) continue;
      } finally {
        await data.close();
      }
    }
    if (e.linkKey !== undefined) written.set(e.linkKey, e.path);
  }
  yield END_OF_ARCHIVE;
}
