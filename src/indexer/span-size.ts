// The default distance between checkpoints, chosen by `npm run bench:index`
// (the only size whose index stays within 1% of the compressed image).

/** Minimum uncompressed bytes between two checkpoints of a layer. */
export const DEFAULT_SPAN_SIZE = 4 * 1024 * 1024;
