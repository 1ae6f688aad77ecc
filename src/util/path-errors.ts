// What went wrong with a path the user gave, from the errno a file system
// call failed with: "does not exist" only when it does not (ENOENT); a path
// longer than the kernel takes, a file where a directory should be, a dead
// FUSE mount or a permission problem each say so.

/** PATH_MAX on Linux, the terminating NUL included. */
const PATH_MAX = 4096;

/** A short reason, e.g. "does not exist" or "path is too long (ENAMETOOLONG: 4453 bytes; Linux takes at most 4095)". */
export function pathProblem(p: string, e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return 'does not exist';
    case 'ENAMETOOLONG':
      return Buffer.byteLength(p) >= PATH_MAX
        ? `path is too long (ENAMETOOLONG: ${Buffer.byteLength(p)} bytes; Linux takes at most ${PATH_MAX - 1})`
        : 'path is too long (ENAMETOOLONG: a component is longer than 255 bytes)';
    case 'ENOTDIR':
      return 'a component of the path is not a directory (ENOTDIR)';
    case 'ELOOP':
      return 'too many levels of symbolic links (ELOOP)';
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${code})`;
    case 'ENOTCONN':
    case 'ECONNABORTED':
      return `is on a FUSE mount whose server is gone (${code}); unmount that first`;
    default:
      return code ? `cannot be resolved (${code}: ${(e as Error).message})` : `cannot be resolved (${String(e)})`;
  }
}
