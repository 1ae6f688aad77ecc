// An image's layer blobs where the index found them: a registry repository
// ("docker://registry/repository") or an OCI layout directory ("oci:/dir").
// Both clients live in oci/, which also resolves manifests with them.

import { ClipError } from '../../errors.js';
import type { AgentPool } from '../../http/agent-pool.js';
import { OciLayout } from '../../oci/layout.js';
import { parseReference } from '../../oci/reference.js';
import { RegistryClient } from '../../oci/registry.js';
import type { BlobSource, RegistryOptions } from '../../oci/types.js';

/** Opens "docker://..." (with `agents`: its connections, shared with other clients) or "oci:/dir". */
export async function openRegistrySource(location: string, opts: RegistryOptions = {}, agents?: AgentPool): Promise<BlobSource> {
  if (location.startsWith('oci:')) return OciLayout.open(location.slice('oci:'.length));
  if (location.startsWith('docker://')) return new RegistryClient(parseReference(location.slice('docker://'.length)), opts, agents);
  throw new ClipError('BAD_REFERENCE', `${JSON.stringify(location)} is not a registry or OCI layout location (docker://... or oci:...)`);
}
