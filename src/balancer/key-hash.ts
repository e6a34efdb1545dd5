/**
 * Stable 32-bit hashes of strings for consistent hashing: FNV-1a over the UTF-8 bytes (so the
 * value does not depend on the JavaScript string representation), then the MurmurHash3 32-bit
 * finaliser to spread FNV's weak low-entropy inputs (`ep-1`, `ep-2`, …) over the whole range.
 * No allocation: UTF-8 is encoded on the fly; lone surrogates hash as U+FFFD, as `Buffer.from` encodes them.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** Plain 32-bit FNV-1a of the UTF-8 encoding of `key`, unsigned. */
export function fnv1a32(key: string): number {
  let h = FNV_OFFSET;
  const n = key.length;
  for (let i = 0; i < n; i++) {
    let c = key.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), FNV_PRIME);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = i + 1 < n ? key.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          i++;
          h = Math.imul(h ^ (0xf0 | (c >> 18)), FNV_PRIME);
          h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), FNV_PRIME);
          h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
          h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
          continue;
        }
        c = 0xfffd;
      }
      h = Math.imul(h ^ (0xe0 | (c >> 12)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
    }
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
  }
  return h >>> 0;
}

/** MurmurHash3's 32-bit finaliser (a bijection on uint32 with full avalanche). */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The hash consistent-hash pickers take: `mix32(fnv1a32(key))`, an unsigned 32-bit integer. */
export function hashKey(key: string): number {
  return mix32(fnv1a32(key));
}
