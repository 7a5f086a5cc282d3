/**
 * The one seeded generator of the TypeScript layer and its tests: mulberry32 (Tommy Ettinger's
 * 32-bit generator, public domain), as used for epoch shuffles ({@link batchIndices}),
 * augmentation (`augment.ts`) and every test's deterministic inputs (`test/helpers/random.ts`).
 */

/** A seeded generator of uniform `[0, 1)` numbers (mulberry32; `seed` is taken modulo 2^32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
