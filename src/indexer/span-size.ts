// How far apart checkpoints are, chosen by benchmark (`npm run
// bench:coldstart -- --spacing 4M,2M,1M,512K`). Windows (32 KiB each before
// compression) were the bulk of an index; kept sparse (only the bytes the
// data after the checkpoint references) they cost little, so spans and
// windows now come every 1 MiB. On the python image at 50 MB/s + 20 ms, with
// read-ahead and fine-grained reads, a plain index starts python in 2.50 s
// (4 MiB), 2.0 s (2 MiB), 1.94 s (1 MiB), 1.83 s (512 KiB), fetching 30.5,
// 21.3, 17.5, 14.9 MB; a traced one in 0.87, -, 0.68, 0.67 s. The index is
// 0.36, 0.43, 0.60, 0.87% of the image (torch: 0.65% at 1 MiB, 0.98% at
// 512 KiB, too near the 1% bound), indexing 1.9x, -, 2.1x, 2.5x native
// gunzip: 1 MiB takes nearly all of the gain for a third of 512 KiB's cost.

/** Minimum uncompressed bytes between two checkpoints of a layer. */
export const DEFAULT_SPAN_SIZE = 1024 * 1024;
/** Minimum uncompressed bytes between two checkpoints that keep their window. */
export const DEFAULT_WINDOW_EVERY = 1024 * 1024;

/**
 * Default bound on a layer's compression ratio (`clip index --max-ratio`).
 * Real layers measured here inflate 2-5x (the python layer: 2.1x); text-heavy
 * ones reach 10-20x. 100 leaves a 5x margin over those while a gzip bomb
 * (deflate reaches 1032:1) is stopped early. Layers holding big zero-filled
 * files (a /var/log/lastlog for a large uid) can exceed it: they name the
 * flag; 0 turns the bound off. Layers up to 256 MiB uncompressed always pass.
 */
export const DEFAULT_MAX_RATIO = 100;
