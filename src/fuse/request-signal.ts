// A request's abort signal, made only when a handler asks for it. Almost no
// handler does, and an AbortController per request cost the daemon 0.48 s of
// its main thread on the torch start-up (bench:ml: tens of thousands of
// LOOKUP, GETATTR, GETXATTR and READ requests). An interrupt that comes
// before anyone asked is remembered: the signal is then made aborted.

export class RequestSignal {
  private controller: AbortController | undefined;
  private aborted = false;
  private reason: unknown;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}
