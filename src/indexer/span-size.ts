// How far apart checkpoints are, chosen by benchmark: windows (32 KiB each
// before compression) are the bulk of an index, so they are kept only every
// DEFAULT_WINDOW_EVERY bytes (`npm run bench:index`: about 1% of the
// compressed image), while spans, the unit of fetching and verifying, are
// smaller (`npm run bench:coldstart`: less fetched per read).

/** Minimum uncompressed bytes between two checkpoints of a layer. */
export const DEFAULT_SPAN_SIZE = 4 * 1024 * 1024;
/** Minimum uncompressed bytes between two checkpoints that keep their window. */
export const DEFAULT_WINDOW_EVERY = 4 * 1024 * 1024;
