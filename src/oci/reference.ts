// Image references ("alpine", "ghcr.io/org/app:1.2@sha256:...") parsed and
// normalised with docker's rules, so clip names images exactly as docker does.

import { ClipError } from '../errors.js';
import type { Reference } from './types.js';

export const DOCKER_HUB = 'docker.io';

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:.]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;

/** Whether `s` is a tag as docker's grammar has it. */
export const isTag = (s: string): boolean => TAG_RE.test(s);
const HEX64_RE = /^[a-f0-9]{64}$/;
const MAX_NAME_LENGTH = 255;

function bad(input: string, why: string): ClipError {
  return new ClipError('BAD_REFERENCE', `invalid image reference ${JSON.stringify(input)}: ${why}`);
}

/** Parses a docker-style image reference; defaults: docker.io, library/, tag "latest". */
export function parseReference(input: string): Reference {
  if (typeof input !== 'string' || input === '') throw bad(String(input), 'empty reference');
  if (/\s/.test(input)) throw bad(input, 'contains whitespace');
  if (HEX64_RE.test(input)) {
    throw bad(input, 'a 64-character hexadecimal string is an image ID, not a name; use NAME@sha256:<hex>');
  }

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    checkReferenceDigest(input, digest);
  }

  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) {
      throw bad(input, `invalid tag ${JSON.stringify(tag)} (letters, digits, "_", "." and "-", at most 128, not starting with "." or "-")`);
    }
  }
  if (rest === '') throw bad(input, 'missing repository name');

  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      registry = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (!DOMAIN_RE.test(registry)) throw bad(input, `invalid registry host ${JSON.stringify(registry)}`);
  if (registry === 'index.docker.io') registry = DOCKER_HUB;
  if (repository === '') throw bad(input, 'missing repository name');
  if (repository !== repository.toLowerCase()) {
    throw bad(input, `repository name ${JSON.stringify(repository)} must be lowercase`);
  }
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT_RE.test(component)) {
      throw bad(
        input,
        component === ''
          ? 'empty path component in repository name'
          : `invalid repository name component ${JSON.stringify(component)} (lowercase letters and digits, separated by ".", "_", "__" or "-")`,
      );
    }
  }
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) {
    throw bad(input, `repository name longer than ${MAX_NAME_LENGTH} characters`);
  }

  const ref: Reference = { registry, repository };
  if (tag !== undefined || digest === undefined) ref.tag = tag ?? 'latest';
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

function checkReferenceDigest(input: string, digest: string): void {
  const colon = digest.indexOf(':');
  if (colon < 0) throw bad(input, `invalid digest ${JSON.stringify(digest)} (expected sha256:<64 hex digits>)`);
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  if (algorithm === 'sha256' && /^[a-f0-9]{64}$/.test(hex)) return;
  if (algorithm === 'sha512' && /^[a-f0-9]{128}$/.test(hex)) return;
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw bad(input, `unsupported digest algorithm ${JSON.stringify(algorithm)} (expected sha256)`);
  }
  throw bad(input, `invalid ${algorithm} digest: expected ${algorithm === 'sha256' ? 64 : 128} lowercase hex digits`);
}

/** "docker.io/library/alpine:latest", "host:5000/app@sha256:..."; the inverse of parseReference. */
export function formatReference(ref: Reference): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** "docker.io/library/alpine": the repository without tag or digest. */
export function repositoryName(ref: Pick<Reference, 'registry' | 'repository'>): string {
  return `${ref.registry}/${ref.repository}`;
}
