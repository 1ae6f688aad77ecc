// Whether the first argument of clip mount/ls/cat names a .clip file or an
// image reference. The rule, in order (no registry is asked, so it is
// predictable): "docker://..." and "oci:..." are references; a name ending
// in ".clip" or starting with "/", "./", "../" or "~" is a file; an existing
// regular file is a file; anything else is an image reference.
// Kept free of heavy imports: the fast mount path uses it.

import { statSync } from 'node:fs';

export function isIndexFileArgument(arg: string): boolean {
  if (arg.startsWith('docker://') || arg.startsWith('oci:')) return false;
  if (arg.endsWith('.clip') || /^(\/|\.\.?\/|~)/.test(arg)) return true;
  try {
    return statSync(arg).isFile();
  } catch {
    return false;
  }
}
