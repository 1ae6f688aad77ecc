// Resources shared by key and counted by user: the first acquire opens one,
// later acquires of the same key get the same one (also while it is still
// opening), and the last release closes it. A resource that fails to open is
// forgotten, so the next acquire tries again.

export interface Lease<T> {
  value: T;
  /** Gives the resource back (once; further calls do nothing). */
  release: () => Promise<void>;
}

interface Entry<T> {
  value: Promise<T>;
  users: number;
}

export class RefCounted<T> {
  private readonly entries = new Map<string, Entry<T>>();

  constructor(private readonly closer: (value: T) => Promise<void>) {}

  /** Resources open (or opening) now. */
  get size(): number {
    return this.entries.size;
  }

  async acquire(key: string, open: () => Promise<T>): Promise<Lease<T>> {
    let entry = this.entries.get(key);
    if (!entry) {
      const created: Entry<T> = { value: open(), users: 0 };
      created.value.catch(() => {
        if (this.entries.get(key) === created) this.entries.delete(key);
      });
      this.entries.set(key, (entry = created));
    }
    entry.users++;
    const held = entry;
    let value: T;
    try {
      value = await held.value;
    } catch (e) {
      held.users--;
      throw e;
    }
    let released = false;
    return {
      value,
      release: async () => {
        if (released) return;
        released = true;
        if (--held.users > 0 || this.entries.get(key) !== held) return;
        this.entries.delete(key);
        await this.closer(value);
      },
    };
  }

  /** Closes every resource, whoever still holds it (shutting down). */
  async closeAll(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => e.value.then(this.closer, () => undefined)));
  }
}
