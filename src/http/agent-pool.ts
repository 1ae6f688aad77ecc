// Connection pools by TLS settings: the endpoints of one registry (its mirrors
// and upstream) each need connections made their way, and clients of the same
// registry share them. Closed once, with everything in it.

import type { ConnectionOptions } from 'node:tls';
import type { Dispatcher } from 'undici';
import { closeAgent, createRegistryAgent } from './client.js';

export class AgentPool {
  private readonly agents = new Map<string, Dispatcher>();
  private closed = false;

  /** `fixed`: one dispatcher for every setting, closed by whoever made it (one with its own connector: tests). */
  constructor(private readonly fixed?: Dispatcher) {}

  /** The agent for TLS settings named `key` (see loadTlsOptions), made on first use. */
  get(key: string, tls?: ConnectionOptions): Dispatcher {
    if (this.closed) throw new Error('AgentPool used after close');
    if (this.fixed) return this.fixed;
    let a = this.agents.get(key);
    if (!a) {
      a = createRegistryAgent(tls);
      this.agents.set(key, a);
    }
    return a;
  }

  get size(): number {
    return this.agents.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(all.map((a) => closeAgent(a)));
  }
}
