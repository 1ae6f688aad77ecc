// Public face of the tar package: the streaming scanner and the entry types
// it reports. Everything else in src/tar/ is an implementation detail.

export { TarScanner, MAX_EXTENSION_SIZE } from './scanner.js';
export type { EntryType, TarEntry, Timespec } from './types.js';
