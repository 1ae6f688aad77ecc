// containerd's filter syntax as its Walk (List) requests use it:
// `field==value`, `field!=value`, `field~=regexp` or a bare `field`
// (present), terms joined by `,` (all must hold), several filters (any may
// hold). Fields are dotted paths, each part a name or a quoted string
// (`labels."containerd.io/snapshot.ref"`); values are bare or quoted.

export type Fields = (path: string[]) => string | undefined;

interface Term {
  path: string[];
  op?: '==' | '!=' | '~=';
  value?: string;
  re?: RegExp;
}

export class FilterError extends Error {}

/** A parsed filter list: matches when any filter matches (all when there are none). */
export function parseFilters(filters: string[]): (fields: Fields) => boolean {
  const parsed = filters.filter((f) => f.trim() !== '').map(parseOne);
  return (fields) => parsed.length === 0 || parsed.some((terms) => terms.every((t) => holds(t, fields)));
}

function holds(t: Term, fields: Fields): boolean {
  const v = fields(t.path);
  if (t.op === undefined) return v !== undefined;
  if (t.op === '==') return v === t.value;
  if (t.op === '!=') return v !== t.value;
  return v !== undefined && t.re!.test(v);
}

function parseOne(text: string): Term[] {
  const s = new Scanner(text);
  const terms: Term[] = [];
  for (;;) {
    s.skipSpace();
    const path = [s.part()];
    while (s.peek() === '.') {
      s.pos++;
      path.push(s.part());
    }
    s.skipSpace();
    const term: Term = { path };
    for (const op of ['==', '!=', '~='] as const) {
      if (s.text.startsWith(op, s.pos)) {
        s.pos += 2;
        s.skipSpace();
        term.op = op;
        term.value = s.value();
        if (op === '~=') {
          try {
            term.re = new RegExp(term.value);
          } catch {
            throw new FilterError(`filter ${JSON.stringify(text)}: bad regular expression ${JSON.stringify(term.value)}`);
          }
        }
        break;
      }
    }
    terms.push(term);
    s.skipSpace();
    if (s.pos === s.text.length) return terms;
    if (s.peek() !== ',') throw new FilterError(`filter ${JSON.stringify(text)}: unexpected ${JSON.stringify(s.peek())} at ${s.pos}`);
    s.pos++;
  }
}

class Scanner {
  pos = 0;
  constructor(readonly text: string) {}
  peek(): string | undefined {
    return this.text[this.pos];
  }
  skipSpace(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++;
  }
  /** One part of a field path: a name, or a quoted string. */
  part(): string {
    if (this.peek() === '"' || this.peek() === '`') return this.quoted();
    const m = /^[A-Za-z0-9_]+/.exec(this.text.slice(this.pos));
    if (!m) throw new FilterError(`filter ${JSON.stringify(this.text)}: expected a field name at ${this.pos}`);
    this.pos += m[0].length;
    return m[0];
  }
  /** A value: quoted, or everything up to the next comma. */
  value(): string {
    if (this.peek() === '"' || this.peek() === '`') return this.quoted();
    const end = this.text.indexOf(',', this.pos);
    const v = this.text.slice(this.pos, end < 0 ? undefined : end).trimEnd();
    this.pos = end < 0 ? this.text.length : end;
    return v;
  }
  private quoted(): string {
    const q = this.peek()!;
    let out = '';
    this.pos++;
    while (this.pos < this.text.length) {
      const c = this.text[this.pos++]!;
      if (c === q) return out;
      if (c === '\\' && q === '"' && this.pos < this.text.length) {
        const e = this.text[this.pos++]!;
        out += e === 'n' ? '\n' : e === 't' ? '\t' : e;
      } else out += c;
    }
    throw new FilterError(`filter ${JSON.stringify(this.text)}: unterminated quoted string`);
  }
}
