// The registry client's public surface: references, platforms, opening images
// from registries or OCI layout directories, and reading their blobs; the
// per-host settings (hosts.toml, certs.d) and endpoints they are reached by.

export { openImage, type OpenedImage } from './open.js';
export { parseReference, formatReference, repositoryName, DOCKER_HUB } from './reference.js';
export { hostPlatform, parsePlatform, formatPlatform, normalizePlatform } from './platform.js';
export { parseWwwAuthenticate, type Challenge } from './auth.js';
export { findCredentials, credentialFiles, type Credentials } from './credentials.js';
export { RegistryClient, isLocalRegistry } from './registry.js';
export { OciLayout, parseLayoutReference } from './layout.js';
export { loadHostsConfig, parseHostsToml, DEFAULT_HOSTS_DIR, type HostsConfig, type HostEntry, type Capability } from './hosts-config.js';
export { registryEndpoints, onMirrorFailure, type Endpoint, type MirrorFailure } from './endpoints.js';
export { digestOf, isDigest, verifyDigest } from '../util/digest.js';
export * as mediaTypes from './media-types.js';
export type { BlobSource, LayerDescriptor, Platform, Reference, RegistryOptions, ResolvedImage } from './types.js';
