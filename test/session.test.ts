/**
 * KV-cache sessions (streaming inference, SPEC section 4) through the TypeScript API on one
 * backend, chosen by GQA_BACKEND (scripts/test.sh runs this file with `native` and with `wasm`).
 * References: `model.forward` over every prefix (no cache), the same rows pushed alone, the SPEC
 * cache formula computed here, and the other backend.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { GQA, type GqaOptions, type Model, type Session, type Tensor } from "gqa";
import { maxAbsDiff, randomData } from "./helpers/safetensors.js";
import { expectCode, BACKEND, NO_WASM, OTHER } from "./helpers/expect.js";

const TOL = 1e-5;
const T = 64;


/** Positional none / RoPE / YaRN, with GQA, MQA and MHA head maps and the three output modes. */
const CONFIGS: Record<string, GqaOptions> = {
  none: { embedDim: 5, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, seed: 3, outputMode: "last_timestep" },
  rope: { embedDim: 5, hiddenSize: 16, numHeads: 4, numKvHeads: 1, numLayers: 2, rope: true, seed: 4, outputMode: "mean_pool" },
  yarn: { embedDim: 5, hiddenSize: 16, numHeads: 4, numKvHeads: 4, numLayers: 2, yarn: true, yarnScale: 4, yarnOriginalMaxPosition: 16, seed: 5, outputMode: "all" },
};

/** Chunk patterns over a length-64 sequence. */
const PATTERNS: Record<string, number[]> = {
  "1+1+...+1": Array(T).fill(1),
  "3+2+1+3+2+1+...": (() => {
    const p: number[] = [];
    for (let s = 0, i = 0; s < T; i++) {
      const c = Math.min([3, 2, 1][i % 3]!, T - s);
      p.push(c);
      s += c;
    }
    return p;
  })(),
  "7+57": [7, 57],
  "64 at once": [T],
};

/** Rows `from..to` of a `[1, T, E]` sequence as a chunk `[1, to-from, E]`. */
function slice(x: Float32Array, e: number, from: number, to: number): Float32Array {
  return x.slice(from * e, to * e);
}

/**
 * `ref[p-1]` = the output mode at the newest position of the prefix of length p, by
 * `model.forward` over that prefix alone (for `all`: the last of the `[1, p, H]` rows).
 */
async function prefixReferences(model: Model, x: Float32Array, e: number, h: number): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let p = 1; p <= T; p++) {
    const y = await model.forward(slice(x, e, 0, p), [1, p, e]);
    out.push(y.data.slice(y.data.length - h));
  }
  return out;
}

/** Pushes `x` in the chunks of `pattern`; returns the max |diff| against the prefix references. */
async function runPattern(model: Model, x: Float32Array, pattern: number[], refs: Float32Array[], allPositions: boolean): Promise<number> {
  const { embedDim: e, hiddenSize: h, outputMode } = model.config;
  const s = await model.session({ maxLen: T });
  let pos = 0;
  let worst = 0;
  try {
    for (const t of pattern) {
      const y = await s.push(slice(x, e, pos, pos + t), [1, t, e], { allPositions });
      const perPosition = allPositions || outputMode === "all";
      expect(y.dims).toEqual(perPosition ? [1, t, h] : [1, h]);
      if (perPosition) {
        for (let i = 0; i < t; i++) worst = Math.max(worst, maxAbsDiff(y.data.subarray(i * h, (i + 1) * h), refs[pos + i]!));
      } else {
        worst = Math.max(worst, maxAbsDiff(y.data, refs[pos + t - 1]!));
      }
      pos += t;
      expect(s.length).toBe(pos);
      expect(s.lengths).toEqual([pos]);
    }
  } finally {
    s.dispose();
  }
  return worst;
}

describe(`KV-cache sessions on backend=${BACKEND}`, () => {
  beforeAll(async () => {
    GQA.reset();
    await GQA.init();
    if (BACKEND !== "auto") expect(GQA.backend).toBe(BACKEND);
  });

  const worstByCase: Record<string, number> = {};
  afterAll(() => {
    console.log(`[session.test] backend=${GQA.backend} max |push - forward over prefix|:`, JSON.stringify(worstByCase));
  });

  for (const [name, cfg] of Object.entries(CONFIGS)) {
    it(`${name} (${cfg.outputMode}, NH ${cfg.numHeads} / NKV ${cfg.numKvHeads}): every chunk pattern equals forward over each prefix (<= ${TOL})`, async () => {
      const model = await GQA.build(cfg);
      const x = randomData(T * cfg.embedDim, 100 + cfg.seed!);
      const refs = await prefixReferences(model, x, cfg.embedDim, cfg.hiddenSize!);
      for (const [pname, pattern] of Object.entries(PATTERNS)) {
        expect(pattern.reduce((a, b) => a + b, 0)).toBe(T);
        for (const all of [false, true]) {
          const worst = await runPattern(model, x, pattern, refs, all);
          worstByCase[`${name}/${pname}${all ? "/allPositions" : ""}`] = worst;
          expect(worst, `${name} ${pname} allPositions=${all}`).toBeLessThanOrEqual(TOL);
        }
      }
      model.dispose();
    });
  }

  it("pushSync gives the same outputs as push", async () => {
    const cfg = CONFIGS.rope!;
    const model = await GQA.build({ ...cfg, outputMode: "last_timestep" });
    const x = randomData(10 * cfg.embedDim, 9);
    const a = await model.session({ maxLen: 10 });
    const b = await model.session({ maxLen: 10 });
    for (const [from, to] of [[0, 4], [4, 5], [5, 10]] as const) {
      const ya = await a.push(slice(x, cfg.embedDim, from, to), [1, to - from, cfg.embedDim]);
      const yb = b.pushSync(slice(x, cfg.embedDim, from, to), [1, to - from, cfg.embedDim]);
      expect(yb.dims).toEqual(ya.dims);
      expect(maxAbsDiff(ya.data, yb.data)).toBe(0);
    }
    model.dispose();
  });

  it("unawaited pushes run in call order", async () => {
    const cfg = { ...CONFIGS.none!, outputMode: "all" as const };
    const model = await GQA.build(cfg);
    const e = cfg.embedDim;
    const x = randomData(12 * e, 11);
    const ref = await model.forward(x, [1, 12, e]);
    const s = await model.session({ maxLen: 12 });
    const ys = await Promise.all([0, 1, 2, 3].map((i) => s.push(slice(x, e, 3 * i, 3 * i + 3), [1, 3, e])));
    const got = new Float32Array(12 * cfg.hiddenSize!);
    for (const [i, y] of ys.entries()) got.set(y.data, i * 3 * cfg.hiddenSize!);
    expect(maxAbsDiff(got, ref.data)).toBeLessThanOrEqual(TOL);
    expect(s.length).toBe(12);
    model.dispose();
    s.dispose();
  });

  it("batched rows with different lengths equal each row pushed alone (ignored positions hold NaN)", async () => {
    for (const [name, cfg] of [["rope", CONFIGS.rope!], ["yarn", { ...CONFIGS.yarn!, outputMode: "last_timestep" as const }], ["none", CONFIGS.none!]] as const) {
      const model = await GQA.build(cfg);
      const { embedDim: e, hiddenSize: h } = model.config;
      const B = 3;
      // Chunk length t and new positions per row for each push.
      const steps: [number, number[]][] = [
        [5, [5, 2, 0]],
        [3, [1, 3, 3]],
        [4, [0, 4, 1]],
        [1, [1, 1, 1]],
      ];
      const rows = [0, 1, 2].map((b) => randomData(13 * e, 200 + b));
      const batched = await model.session({ maxLen: 13, batch: B });
      const alone = await Promise.all(rows.map(() => model.session({ maxLen: 13 })));
      const used = [0, 0, 0];
      let worst = 0;
      for (const all of [false, true]) {
        batched.reset();
        for (const s of alone) s.reset();
        used.fill(0);
        for (const [t, ns] of steps) {
          const chunk = new Float32Array(B * t * e).fill(NaN);
          for (let b = 0; b < B; b++) chunk.set(slice(rows[b]!, e, used[b]!, used[b]! + ns[b]!), b * t * e);
          const y: Tensor = await batched.push(chunk, [B, t, e], { lengths: ns, allPositions: all });
          const per = all || cfg.outputMode === "all";
          expect(y.dims).toEqual(per ? [B, t, h] : [B, h]);
          for (let b = 0; b < B; b++) {
            const rowOut = per ? y.data.subarray(b * t * h, (b + 1) * t * h) : y.data.subarray(b * h, (b + 1) * h);
            expect(Array.from(rowOut).every(Number.isFinite), `row ${b} finite`).toBe(true);
            if (ns[b] === 0) {
              if (per || used[b] === 0) expect(Array.from(rowOut).every((v) => v === 0), "no new or no cached position gives zeros").toBe(true);
              continue;
            }
            const ya = await alone[b]!.push(slice(rows[b]!, e, used[b]!, used[b]! + ns[b]!), [1, ns[b]!, e], { allPositions: all });
            // Alone the chunk is ns[b] long; batched it is t long with zeros after ns[b] (per-position outputs).
            const cmp = per ? rowOut.subarray(0, ns[b]! * h) : rowOut;
            worst = Math.max(worst, maxAbsDiff(cmp, ya.data));
            if (per) expect(Array.from(rowOut.subarray(ns[b]! * h)).every((v) => v === 0), "ignored positions give zeros").toBe(true);
            used[b]! += ns[b]!;
          }
          expect(batched.lengths).toEqual(used);
          expect(batched.length).toBe(Math.max(...used));
        }
      }
      worstByCase[`batched-vs-alone/${name}/${cfg.outputMode}`] = worst;
      expect(worst).toBeLessThanOrEqual(TOL);
      model.dispose();
    }
  });

  it("CACHE_FULL names the row and leaves the session unchanged and usable", async () => {
    const cfg = CONFIGS.rope!;
    const model = await GQA.build({ ...cfg, outputMode: "last_timestep" });
    const e = cfg.embedDim;
    const x = randomData(8 * e, 31);
    const s = await model.session({ maxLen: 8 });
    await s.push(slice(x, e, 0, 6), [1, 6, e]);
    await expectCode(() => s.push(new Float32Array(3 * e), [1, 3, e]), "CACHE_FULL", /row 0/);
    await expectCode(() => s.pushSync(new Float32Array(3 * e), [1, 3, e]), "CACHE_FULL");
    expect(s.lengths).toEqual([6]);
    const y = await s.push(slice(x, e, 6, 8), [1, 2, e]);
    const ref = await model.forward(x, [1, 8, e]);
    expect(maxAbsDiff(y.data, ref.data)).toBeLessThanOrEqual(TOL);
    expect(s.length).toBe(8);
    await expectCode(() => s.push(new Float32Array(e), [1, 1, e]), "CACHE_FULL");
    // Batched: the first overflowing row is named; no row changes.
    const sb = await model.session({ maxLen: 4, batch: 2 });
    await sb.push(new Float32Array(2 * 3 * e), [2, 3, e], { lengths: [1, 3] });
    await expectCode(() => sb.push(new Float32Array(2 * 2 * e), [2, 2, e]), "CACHE_FULL", /row 1/);
    expect(sb.lengths).toEqual([1, 3]);
    await sb.push(new Float32Array(2 * 2 * e), [2, 2, e], { lengths: [2, 1] });
    expect(sb.lengths).toEqual([3, 4]);
    model.dispose();
  });

  it("reset forgets the cache: the next pushes equal a fresh session's", async () => {
    const cfg = CONFIGS.yarn!;
    const model = await GQA.build(cfg);
    const e = cfg.embedDim;
    const x = randomData(6 * e, 41);
    const s = await model.session({ maxLen: 6 });
    await s.push(randomData(4 * e, 42), [1, 4, e]);
    s.reset();
    expect(s.lengths).toEqual([0]);
    expect(s.length).toBe(0);
    const y = await s.push(x, [1, 6, e]);
    const ref = await model.forward(x, [1, 6, e]);
    expect(maxAbsDiff(y.data, ref.data)).toBeLessThanOrEqual(TOL);
    model.dispose();
  });

  it("kvCacheBytes follows the SPEC formula; GQA 8/2 caches a quarter of MHA 8/8", async () => {
    const H = 64, NH = 8, L = 3, maxLen = 17, B = 2;
    const D = H / NH;
    const bytes: Record<number, number> = {};
    for (const nkv of [8, 2, 1]) {
      const opts: GqaOptions = { embedDim: 4, hiddenSize: H, numHeads: NH, numKvHeads: nkv, numLayers: L, rope: true };
      const model = await GQA.build(opts);
      const s: Session = await model.session({ maxLen, batch: B });
      const perToken = 2 * L * nkv * D * 4;
      expect(s.kvCacheBytesPerToken).toBe(perToken);
      expect(GQA.kvCacheBytesPerToken(opts)).toBe(perToken);
      expect(s.kvCacheBytes).toBe(B * maxLen * perToken);
      expect(s.capacity).toBe(maxLen);
      expect(s.batch).toBe(B);
      expect(s.lengths).toEqual([0, 0]);
      bytes[nkv] = s.kvCacheBytes;
      s.dispose();
      model.dispose();
    }
    expect(bytes[2]! * 4).toBe(bytes[8]!);
    expect(bytes[1]! * 8).toBe(bytes[8]!);
  });

  it("errors: bad options, dims, lengths; DISPOSED; the session outlives model.dispose()", async () => {
    const cfg = CONFIGS.none!;
    const model = await GQA.build(cfg);
    const e = cfg.embedDim;
    await expectCode(() => model.session({ maxLen: 0 }), "INVALID_INPUT", /maxLen/);
    await expectCode(() => model.session({ maxLen: 2.5 }), "INVALID_INPUT", /maxLen/);
    await expectCode(() => model.session({} as { maxLen: number }), "INVALID_INPUT", /maxLen/);
    await expectCode(() => model.session({ maxLen: 4, batch: -1 }), "INVALID_INPUT", /batch/);
    const s = await model.session({ maxLen: 8, batch: 2 });
    await expectCode(() => s.push(new Float32Array(2 * e), [1, 2, e]), "INVALID_INPUT", /dims/);
    await expectCode(() => s.push(new Float32Array(2 * 2 * (e + 1)), [2, 2, e + 1]), "INVALID_INPUT", /embedDim/);
    await expectCode(() => s.push(new Float32Array(2 * e), [2, 0, e]), "INVALID_INPUT", /dims/);
    await expectCode(() => s.push(new Float32Array(3), [2, 2, e]), "INVALID_INPUT", /input/);
    await expectCode(() => s.push(new Float32Array(2 * 2 * e), [2, 2, e], { lengths: [1] }), "INVALID_INPUT", /row_lengths/);
    await expectCode(() => s.push(new Float32Array(2 * 2 * e), [2, 2, e], { lengths: [1, 3] }), "INVALID_INPUT", /row_lengths\[1\]/);
    await expectCode(() => s.push([1, 2] as unknown as Float32Array, [2, 1, 1]), "INVALID_INPUT", /Float32Array/);
    expect(s.lengths).toEqual([0, 0]);

    // The session keeps its own reference to the weights.
    const x = randomData(2 * 5 * e, 51);
    const before = await model.forward(x, [2, 5, e]);
    model.dispose();
    await expectCode(() => model.session({ maxLen: 4 }), "DISPOSED");
    const y = await s.push(x, [2, 5, e]);
    expect(maxAbsDiff(y.data, before.data)).toBeLessThanOrEqual(TOL);
    s.dispose();
    s.dispose();
    expect(s.disposed).toBe(true);
    await expectCode(() => s.push(x, [2, 5, e]), "DISPOSED");
    await expectCode(() => s.pushSync(x, [2, 5, e]), "DISPOSED");
    await expectCode(() => s.lengths, "DISPOSED");
    await expectCode(() => s.reset(), "DISPOSED");
    await expectCode(() => s.kvCacheBytes, "DISPOSED");
  });

  it("batch 0 gives empty outputs", async () => {
    const model = await GQA.build(CONFIGS.none!);
    const s = await model.session({ maxLen: 4, batch: 0 });
    const y = await s.push(new Float32Array(0), [0, 2, 5]);
    expect(y.dims).toEqual([0, 16]);
    expect(s.kvCacheBytes).toBe(0);
    model.dispose();
  });

  it.skipIf(NO_WASM)(`session outputs agree with the ${OTHER} backend (<= ${TOL})`, async () => {
    const mine: Model[] = [];
    const pattern = [7, 1, 1, 5, 2];
    const e = 5;
    const x = randomData(2 * 16 * e, 61);
    const pushAll = async (m: Model): Promise<Float32Array[]> => {
      const s = await m.session({ maxLen: 16, batch: 2 });
      const out: Float32Array[] = [];
      let pos = 0;
      for (const t of pattern) {
        const chunk = new Float32Array(2 * t * e);
        for (let b = 0; b < 2; b++) chunk.set(x.subarray((b * 16 + pos) * e, (b * 16 + pos + t) * e), b * t * e);
        out.push((await s.push(chunk, [2, t, e], { lengths: [t, Math.max(0, t - 1)], allPositions: true })).data);
        pos += t;
      }
      s.dispose();
      return out;
    };
    try {
      const results: Float32Array[][] = [];
      for (const cfg of Object.values(CONFIGS)) {
        const m = await GQA.build(cfg);
        mine.push(m);
        results.push(await pushAll(m));
      }
      await GQA.init({ backend: OTHER });
      expect(GQA.backend).toBe(OTHER);
      let worst = 0;
      const cfgs = Object.values(CONFIGS);
      for (let i = 0; i < cfgs.length; i++) {
        const other = await GQA.build(cfgs[i]!);
        expect(other.weightsDigest()).toBe(mine[i]!.weightsDigest());
        const theirs = await pushAll(other);
        for (let k = 0; k < pattern.length; k++) worst = Math.max(worst, maxAbsDiff(results[i]![k]!, theirs[k]!));
        other.dispose();
      }
      worstByCase[`${BACKEND}-vs-${OTHER}`] = worst;
      expect(worst).toBeLessThanOrEqual(TOL);
    } finally {
      for (const m of mine) m.dispose();
      GQA.reset();
      await GQA.init();
    }
  });
});
