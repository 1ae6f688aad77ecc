// TOML files clip reads (the daemon's config, hosts.toml): parsed with
// smol-toml, a syntax error reported as "FILE:LINE:COLUMN: not valid TOML".

import { parse, TomlError } from 'smol-toml';
import { ClipError } from '../errors.js';

/** The document of `text`; `label` names the file in the error ("config /etc/clip/config.toml"). */
export function parseToml(text: string, label: string): Record<string, unknown> {
  try {
    return parse(text);
  } catch (e) {
    if (e instanceof TomlError) {
      const reason = e.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
      throw new ClipError('BAD_ARGUMENT', `${label}:${e.line}:${e.column}: not valid TOML: ${reason}`);
    }
    throw e;
  }
}
