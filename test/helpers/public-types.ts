// Finds the named types a package's public API mentions but does not export:
// walks the declarations reachable from the entry's exports (parameters,
// return types, members, heritage) and reports each interface, type alias,
// class or enum declared inside the package that the entry does not export.
// A caller could not name such a type to build the argument it must pass.

import path from 'node:path';
import ts from 'typescript';

const NAMED = ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias | ts.SymbolFlags.Class | ts.SymbolFlags.Enum;

/** `entry`: the package's .d.ts; `root`: the package directory (types declared elsewhere are not its business). */
export function unexportedTypes(entry: string, root: string): string[] {
  const program = ts.createProgram([entry], { noEmit: true, skipLibCheck: true, types: [] });
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(entry);
  if (!file) throw new Error(`cannot read ${entry}`);
  const moduleSymbol = checker.getSymbolAtLocation(file);
  if (!moduleSymbol) throw new Error(`${entry} is not a module`);

  const resolve = (s: ts.Symbol): ts.Symbol => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
  // The package's own files: not outside root, nor its installed dependencies under root/node_modules.
  const inPackage = (d: ts.Declaration): boolean => {
    const rel = path.relative(root, d.getSourceFile().fileName);
    return !rel.startsWith('..') && !rel.split(path.sep).includes('node_modules');
  };
  const exported = new Set(checker.getExportsOfModule(moduleSymbol).map(resolve));

  const missing = new Map<ts.Symbol, string>();
  const seen = new Set<ts.Symbol>();
  const queue = [...exported];
  const reach = (s: ts.Symbol | undefined, from: string): void => {
    if (!s) return;
    s = resolve(s);
    if (!(s.flags & NAMED) || !s.declarations?.some(inPackage)) return;
    if (!exported.has(s) && !missing.has(s)) missing.set(s, `${s.name} (used by ${from})`);
    if (!seen.has(s)) queue.push(s);
  };

  while (queue.length > 0) {
    const s = queue.pop()!;
    if (seen.has(s)) continue;
    seen.add(s);
    for (const decl of s.declarations ?? []) {
      if (!inPackage(decl)) continue;
      const visit = (n: ts.Node): void => {
        // Private and protected members are not the caller's business (a .d.ts keeps their names only).
        if (
          ts.canHaveModifiers(n) &&
          ts.getModifiers(n)?.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword || m.kind === ts.SyntaxKind.ProtectedKeyword)
        )
          return;
        if (ts.isTypeReferenceNode(n)) reach(checker.getSymbolAtLocation(n.typeName), s.name);
        else if (ts.isExpressionWithTypeArguments(n)) reach(checker.getSymbolAtLocation(n.expression), s.name);
        else if (ts.isImportTypeNode(n) && n.qualifier) reach(checker.getSymbolAtLocation(n.qualifier), s.name);
        else if (ts.isTypeQueryNode(n)) reach(checker.getSymbolAtLocation(n.exprName), s.name);
        ts.forEachChild(n, visit);
      };
      visit(decl);
    }
  }
  return [...missing.values()].sort();
}
