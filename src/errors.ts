// One error type for everything a user can cause (bad reference, bad
// credentials, corrupt input). The CLI prints its message and exits non-zero;
// anything else is a bug and gets a stack trace.

export type ClipErrorCode =
  | 'BAD_REFERENCE'
  | 'NOT_FOUND'
  | 'UNAUTHORIZED'
  | 'REGISTRY'
  /** An S3 endpoint refused, failed or could not be reached. */
  | 'S3'
  | 'DIGEST_MISMATCH'
  | 'BAD_TAR'
  | 'BAD_GZIP'
  | 'UNSUPPORTED'
  | 'BAD_INDEX'
  | 'BAD_ARGUMENT'
  /** A mount is in use (by a process, or another mount over it). */
  | 'BUSY'
  | 'IO';

export class ClipError extends Error {
  readonly code: ClipErrorCode;
  constructor(code: ClipErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ClipError';
    this.code = code;
  }
}

export function isClipError(e: unknown): e is ClipError {
  return e instanceof ClipError;
}
