import t from 'tap';
import { fnv1a32, hashKey, mix32 } from '../../../src/balancer/key-hash.ts';
import { seededRandom } from './sim-helpers.ts';

t.test('FNV-1a 32 reference vectors', async (t) => {
  t.equal(fnv1a32(''), 0x811c9dc5);
  t.equal(fnv1a32('a'), 0xe40c292c);
  t.equal(fnv1a32('foobar'), 0xbf9cf968);
});

/** Reference: FNV-1a over the bytes Node encodes. */
function viaBuffer(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}

t.test('hashes the UTF-8 bytes, surrogates and lone surrogates included', async (t) => {
  const samples = [
    'é',
    'ßx',
    '€uro',
    'ключ',
    '日本語',
    '😀',
    'a😀b',
    '\ud800',
    'x\udc00y',
    '\ud83d',
    '\u07ff\u0800',
  ];
  for (const s of samples) t.equal(fnv1a32(s), viaBuffer(s), JSON.stringify(s));
  const random = seededRandom(77);
  for (let i = 0; i < 500; i++) {
    let s = '';
    const len = Math.floor(random() * 12);
    for (let j = 0; j < len; j++) s += String.fromCharCode(Math.floor(random() * 0x10000));
    if (fnv1a32(s) !== viaBuffer(s)) {
      t.fail(`mismatch for ${JSON.stringify(s)}`);
      return;
    }
  }
  t.pass('500 random UTF-16 strings agree with Buffer.from');
});

t.test('hashKey: stable, unsigned, spread over the range', async (t) => {
  t.equal(hashKey('user-42'), hashKey('user-42'));
  t.equal(hashKey('user-42'), mix32(fnv1a32('user-42')));
  t.equal(mix32(0), 0, 'the finaliser maps 0 to 0');
  const buckets = new Array<number>(16).fill(0);
  let allUint32 = true;
  for (let i = 0; i < 16_000; i++) {
    const h = hashKey(`ep-${i}`);
    if (!(Number.isInteger(h) && h >= 0 && h <= 0xffffffff)) allUint32 = false;
    const b = h >>> 28;
    buckets[b] = (buckets[b] ?? 0) + 1;
  }
  t.ok(allUint32, 'always an unsigned 32-bit integer');
  t.ok(
    buckets.every((c) => Math.abs(c - 1000) < 150),
    `top 4 bits evenly spread for sequential keys: ${buckets.join(' ')}`,
  );
});
