// Finds nodes by path in a merged tree, the way the kernel would inside the
// container: symlinks resolve relative to the image root, never outside it.

import { ClipError } from '../errors.js';
import type { ImageTree, Node } from './types.js';

const MAX_SYMLINKS = 40;

function parts(path: string): string[] {
  return path.split('/').filter((p) => p !== '' && p !== '.');
}

/**
 * Resolves `path` in the image. Symlinks in the middle are always followed;
 * the last component only when `followLast` is set.
 */
export function lookupPath(tree: ImageTree, path: string, followLast = false): Node {
  let hops = 0;
  const resolve = (start: Node[], names: string[], follow: boolean): Node[] => {
    const stack = [...start];
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      if (name === '..') {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const dir = stack[stack.length - 1]!;
      if (dir.type !== 'dir') throw new ClipError('NOT_FOUND', `${path}: not a directory`);
      const child = dir.children!.get(name);
      if (!child) throw new ClipError('NOT_FOUND', `${path}: no such file or directory in the image`);
      const isLast = i === names.length - 1;
      if (child.type === 'symlink' && (!isLast || follow)) {
        if (++hops > MAX_SYMLINKS) throw new ClipError('NOT_FOUND', `${path}: too many levels of symbolic links`);
        const target = child.target ?? '';
        const base = target.startsWith('/') ? [tree.root] : stack;
        const resolved = resolve(base, parts(target), true);
        stack.length = 0;
        stack.push(...resolved);
        continue;
      }
      stack.push(child);
    }
    return stack;
  };
  const stack = resolve([tree.root], parts(path), followLast);
  return stack[stack.length - 1]!;
}

/** Every node with its path, depth first in name order ("" is the root). */
export function* walk(tree: ImageTree): Generator<[string, Node]> {
  const stack: [string, Node][] = [['', tree.root]];
  while (stack.length > 0) {
    const [path, node] = stack.pop()!;
    yield [path, node];
    if (!node.children) continue;
    const children = [...node.children].reverse();
    for (const [name, child] of children) stack.push([path === '' ? name : `${path}/${name}`, child]);
  }
}
