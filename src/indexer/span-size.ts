// How far apart checkpoints are, chosen by benchmark. Windows (32 KiB each
// before compression) are the bulk of an index: every 4 MiB they cost about
// 1% of the compressed image whole, 0.1% sparse (only the bytes the data after
// the checkpoint references: 13% of their whole deflated size on the
// bench:index image; the index is then 0.31% of it). Spans, the unit of
// fetching and verifying, can be made smaller with --span-size while windows
// stay this far apart: the index hardly grows and reads fetch less
// (`npm run bench:coldstart`).

/** Minimum uncompressed bytes between two checkpoints of a layer. */
export const DEFAULT_SPAN_SIZE = 4 * 1024 * 1024;
/** Minimum uncompressed bytes between two checkpoints that keep their window. */
export const DEFAULT_WINDOW_EVERY = 4 * 1024 * 1024;

/**
 * Default bound on a layer's compression ratio (`clip index --max-ratio`).
 * Real layers measured here inflate 2-5x (the python layer: 2.1x); text-heavy
 * ones reach 10-20x. 100 leaves a 5x margin over those while a gzip bomb
 * (deflate reaches 1032:1) is stopped early. Layers holding big zero-filled
 * files (a /var/log/lastlog for a large uid) can exceed it: they name the
 * flag; 0 turns the bound off. Layers up to 256 MiB uncompressed always pass.
 */
export const DEFAULT_MAX_RATIO = 100;
