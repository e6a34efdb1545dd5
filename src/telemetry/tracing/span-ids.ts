/**
 * Trace and span ids from a pooled random buffer: one `randomFillSync` fills ids for many requests,
 * so an id costs a slice of the buffer turned into hex, not a call into the CSPRNG (measured in the
 * README's Tracing section).
 */
import { randomFillSync } from 'node:crypto';

export interface IdSource {
  /** 32 lower-case hex digits, not all zero. */
  traceId(): string;
  /** 16 lower-case hex digits, not all zero. */
  spanId(): string;
}

const POOL_BYTES = 4096;
const ZERO_SPAN = '0000000000000000';

export class PooledIds implements IdSource {
  private readonly pool = Buffer.allocUnsafe(POOL_BYTES);
  private offset = POOL_BYTES;

  private hex(bytes: number): string {
    if (this.offset + bytes > POOL_BYTES) {
      randomFillSync(this.pool);
      this.offset = 0;
    }
    const s = this.pool.toString('hex', this.offset, this.offset + bytes);
    this.offset += bytes;
    return s;
  }

  traceId(): string {
    const id = this.hex(16);
    // All-zero ids are invalid; the odds are 2^-128, but the answer must still be valid.
    return id.startsWith(ZERO_SPAN) && id.endsWith(ZERO_SPAN) ? this.traceId() : id;
  }

  spanId(): string {
    const id = this.hex(8);
    return id === ZERO_SPAN ? this.spanId() : id;
  }
}
