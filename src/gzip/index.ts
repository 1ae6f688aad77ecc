// Seekable gzip: build a seek table while streaming a layer once, then inflate
// any span from its checkpoint.

export type { Checkpoint, FineSpan, LayerCompression, Mark, SpanTable } from './types.js';
export { CheckpointBuilder } from './checkpoint-builder.js';
export { RawSpanBuilder } from './raw-span-builder.js';
export { inflateSpans, needsWindow, spanAt, spanOutputRange, spanRange } from './span-reader.js';
