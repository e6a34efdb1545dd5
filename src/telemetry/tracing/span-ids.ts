/**
 * Trace and span ids from a pooled random buffer: one fill and one hex conversion serve the ids of
 * about 40 requests, so an id costs a slice of a hex string, not a call into a random source or into
 * Buffer's hex encoder (measured in the README's Tracing section). The pool is small on purpose: a
 * queued span's ids are slices that keep their 2 KiB pool string alive until export.
 *
 * The default fill is V8's `Math.random` (xorshift128+, seeded per process), not the CSPRNG: ids
 * must be unique and evenly spread, not secret (OpenTelemetry's JavaScript SDK makes them the same
 * way), and `randomFillSync` cost about 0.2 µs per request here, several times the rest of an id.
 */

export interface IdSource {
  /** 32 lower-case hex digits, not all zero. */
  traceId(): string;
  /** 16 lower-case hex digits, not all zero. */
  spanId(): string;
}

const POOL_BYTES = 1024;
const POOL_HEX = POOL_BYTES * 2;
const ZERO_SPAN = '0000000000000000';
const ZERO_TRACE = ZERO_SPAN + ZERO_SPAN;

export class PooledIds implements IdSource {
  private readonly bytes = Buffer.allocUnsafe(POOL_BYTES);
  private hex = '';
  private offset = POOL_HEX;
  private readonly fill: (b: Buffer) => void;

  /** `fill`: fills the pool with random bytes (tests inject their own). */
  constructor(fill: (b: Buffer) => void = fillFromMathRandom) {
    this.fill = fill;
  }

  private take(chars: number): string {
    if (this.offset + chars > POOL_HEX) {
      this.fill(this.bytes);
      this.hex = this.bytes.toString('hex');
      this.offset = 0;
    }
    const s = this.hex.slice(this.offset, this.offset + chars);
    this.offset += chars;
    return s;
  }

  traceId(): string {
    const id = this.take(32);
    // All-zero ids are invalid; the odds are 2^-128, but the answer must still be valid.
    return id === ZERO_TRACE ? this.traceId() : id;
  }

  spanId(): string {
    const id = this.take(16);
    return id === ZERO_SPAN ? this.spanId() : id;
  }
}

/** Fills `b` with 32 random bits per `Math.random` draw (the pool's length is a multiple of 4). */
export function fillFromMathRandom(b: Buffer): void {
  for (let i = 0; i + 4 <= b.length; i += 4) b.writeUInt32LE((Math.random() * 0x1_0000_0000) >>> 0, i);
}
