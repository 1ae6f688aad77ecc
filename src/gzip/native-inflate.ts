// Native zlib inflate driven one deflate block at a time. Node's public zlib
// API hides Z_BLOCK (its streams treat an early return as end of data), so we
// drive the native handle that zlib.Gunzip wraps directly, the way Node's own
// synchronous API does. This is the one place that touches Node internals;
// a test pins the behaviour we rely on.

import zlib from 'node:zlib';

interface NativeHandle {
  writeSync(flush: number, input: Buffer, inOff: number, inLen: number, out: Buffer, outOff: number, outLen: number): void;
  onerror: (message: string, errno: number) => void;
}

export interface BlockStep {
  /** Compressed bytes consumed by this call. */
  consumed: number;
  /** Output bytes produced by this call (written at the given offset). */
  produced: number;
  /** True when inflate stopped with input left and output space left: a block boundary
   *  (or a gzip member's header just ended). */
  boundary: boolean;
}

/** A gzip decoder (multi-member aware, as Node's Gunzip is) that stops at every deflate block boundary. */
export class BlockInflater {
  private readonly owner: zlib.Gunzip;
  private readonly handle: NativeHandle;
  private readonly state: Uint32Array;
  private error: string | undefined;

  constructor() {
    this.owner = new zlib.Gunzip();
    const internals = this.owner as unknown as { _handle?: NativeHandle; _writeState?: Uint32Array };
    if (!internals._handle || !internals._writeState || typeof internals._handle.writeSync !== 'function') {
      throw new Error('this Node.js version does not expose the zlib handle clip needs (tested on Node 20)');
    }
    this.handle = internals._handle;
    this.state = internals._writeState;
    this.handle.onerror = (message: string) => {
      this.error = message;
    };
  }

  /** Inflates from input[inOff, inOff+inLen) into out[outOff, outOff+outLen) until a block boundary,
   *  the input is used up, or the output is full. Throws the zlib error message on corrupt data. */
  step(
    input: Buffer,
    inOff: number,
    inLen: number,
    out: Buffer,
    outOff: number,
    outLen: number,
    flush: number = zlib.constants.Z_BLOCK,
  ): BlockStep {
    this.handle.writeSync(flush, input, inOff, inLen, out, outOff, outLen);
    if (this.error !== undefined) throw new Error(this.error);
    const availOut = this.state[0]!;
    const availIn = this.state[1]!;
    return { consumed: inLen - availIn, produced: outLen - availOut, boundary: availIn > 0 && availOut > 0 };
  }

  close(): void {
    this.owner.close();
  }
}
