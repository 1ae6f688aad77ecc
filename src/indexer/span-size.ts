// How far apart checkpoints are, chosen by benchmark. Windows (32 KiB each
// before compression) are the bulk of an index: every 4 MiB they cost about
// 1% of the compressed image (`npm run bench:index`). Spans, the unit of
// fetching and verifying, can be made smaller with --span-size while windows
// stay this far apart: the index hardly grows and reads fetch less
// (`npm run bench:coldstart`).

/** Minimum uncompressed bytes between two checkpoints of a layer. */
export const DEFAULT_SPAN_SIZE = 4 * 1024 * 1024;
/** Minimum uncompressed bytes between two checkpoints that keep their window. */
export const DEFAULT_WINDOW_EVERY = 4 * 1024 * 1024;
