/**
 * The seeded generators of the TypeScript layer and its tests: mulberry32 (Tommy Ettinger's
 * 32-bit generator, public domain), as used for epoch shuffles ({@link batchIndices}),
 * augmentation (`augment.ts`) and every test's deterministic inputs (`test/helpers/random.ts`);
 * and xorshift32, which deals the CLI's validation hold-out and cross-validation folds.
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

/**
 * A seeded generator of uniform `[0, 1)` numbers: xorshift32 (Marsaglia, "Xorshift RNGs", J. Stat.
 * Softw. 2003; shifts 13, 17, 5) started from `(seed ^ salt) >>> 0` (0 becomes 1, which xorshift
 * needs). `salt` keeps the streams of different users of one seed apart.
 */
export function xorshift32(seed: number, salt: number): () => number {
  let s = (seed ^ salt) >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}
