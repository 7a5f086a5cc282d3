/**
 * The tests' one seeded generator: mulberry32, written here independently of the library's copy
 * (`ts/data/random.ts`) so that test inputs do not depend on the code under test.
 */

/** A seeded generator of uniform `[0, 1)` numbers (mulberry32; `seed` taken modulo 2^32). */
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

/** `n` deterministic floats uniform in `[-scale, scale)` (mulberry32 of `seed`). */
export function randomData(n: number, seed = 1, scale = 1): Float32Array {
  const rand = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}
