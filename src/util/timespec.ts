// A point in time as stat(2) and tar's PAX records give it: whole seconds
// since the epoch (negative before 1970) and nanoseconds. One type for the
// tar scanner, the image tree, the index format and the FUSE wire.

export interface Timespec {
  sec: number;
  /** 0 ..< 1e9, also for negative `sec`. */
  nsec: number;
}
