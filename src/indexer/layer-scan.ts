// The work on a layer's uncompressed tar stream, shared by the indexer (which
// inflates a registry blob) and the archive writer (which produces the tar):
// the tar scanner collects the entries with their data offsets, and the
// stream's sha256 is the layer's diff id.

import { createHash } from 'node:crypto';
import { LayerEntries, type EntryBudget } from '../image/layer-entries.js';
import { digestOf } from '../util/digest.js';
import { TarScanner } from '../tar/index.js';

export interface ScannedLayer {
  entries: LayerEntries;
  /** "sha256:..." of the uncompressed stream. */
  diffId: string;
}

export class LayerScan {
  private readonly entries: LayerEntries;
  private readonly tar: TarScanner;
  private readonly diff = createHash('sha256');

  constructor(budget: EntryBudget) {
    const entries = new LayerEntries(budget);
    this.entries = entries;
    this.tar = new TarScanner((e) => entries.add(e));
  }

  /** The next bytes of the tar stream, in order. */
  push(chunk: Buffer): void {
    this.diff.update(chunk);
    this.tar.push(chunk);
  }

  /** Checks that the tar ended cleanly; the layer's entries and diff id. */
  finish(): ScannedLayer {
    this.tar.finish();
    return { entries: this.entries, diffId: digestOf(this.diff) };
  }
}
