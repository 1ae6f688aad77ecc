// The registry client's public surface: references, platforms, opening images
// from registries or OCI layout directories, and reading their blobs.

export { openImage, type OpenedImage } from './open.js';
export { parseReference, formatReference, repositoryName, DOCKER_HUB } from './reference.js';
export { hostPlatform, parsePlatform, formatPlatform, normalizePlatform } from './platform.js';
export { parseWwwAuthenticate, type Challenge } from './auth.js';
export { findCredentials, credentialFiles, type Credentials } from './credentials.js';
export { RegistryClient, isLocalRegistry, registryBaseUrl } from './registry.js';
export { OciLayout, parseLayoutReference } from './layout.js';
export { digestOf, isDigest, verifyDigest } from '../util/digest.js';
export * as mediaTypes from './media-types.js';
export type { BlobSource, LayerDescriptor, Platform, Reference, RegistryOptions, ResolvedImage } from './types.js';
