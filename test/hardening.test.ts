/**
 * Hardening, per backend: the memory budget (OUT_OF_MEMORY before allocating; the
 * same request succeeds after a dispose), the NaN/Inf input policy, pathological inputs, and a
 * forced Rust panic (test hook `gqa/testing`) that must come back as GqaError INTERNAL with the
 * backend still working.
 */
import os from "node:os";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { GQA, type GqaOptions, type Model } from "gqa";
import { setPanicSite } from "gqa/testing";
import { BACKEND, expectCode } from "./helpers/expect.js";
import { randomData } from "./helpers/random.js";

const MiB = 1 << 20;
const GiB = 1024 * MiB;

/** Deterministic values in [-1, 1). */
function values(n: number, seed = 1): Float32Array {
  return randomData(n, seed);
}

const WIDE: GqaOptions = { embedDim: 8, hiddenSize: 256, numHeads: 4, numKvHeads: 2, numLayers: 2, dropout: 0, seed: 3 };

beforeAll(async () => {
  await GQA.init(BACKEND === "auto" ? {} : { backend: BACKEND });
});

describe(`memory budget (${BACKEND})`, () => {
  afterEach(() => {
    GQA.setMemoryLimit(null);
  });

  it("reports the limit and the bytes in use; a model holds exactly its parameters until dispose", async () => {
    const m0 = GQA.memory!;
    if (GQA.backend === "wasm") expect(m0.limit).toBe(4 * GiB);
    else {
      expect(m0.limit).toBeGreaterThan(0);
      expect(m0.limit).toBeLessThanOrEqual(os.totalmem());
    }
    const model = await GQA.build(WIDE);
    const params = GQA.paramCount(WIDE, { exact: true });
    expect(GQA.memory!.inUse - m0.inUse).toBe(params * 4);
    model.dispose();
    expect(GQA.memory!.inUse).toBe(m0.inUse);
  });

  it("a model that had a session (and pushed) frees its memory at dispose, without waiting for garbage collection", async () => {
    const start = GQA.memory!.inUse;
    for (const order of ["session first", "model first"]) {
      const m = await GQA.build({ ...WIDE, rope: true });
      const s = await m.session({ maxLen: 16 });
      await s.push(values(2 * 8), [1, 2, 8]);
      expect(GQA.memory!.inUse).toBeGreaterThan(start);
      if (order === "session first") {
        s.dispose();
        m.dispose();
      } else {
        m.dispose();
        expect(GQA.memory!.inUse, "the live session keeps the weights").toBeGreaterThan(start);
        s.dispose();
      }
      expect([order, GQA.memory!.inUse]).toEqual([order, start]);
    }
  });

  it("a model, session, input or trainer past the limit fails with OUT_OF_MEMORY before allocating; after dispose the same request succeeds", async () => {
    const paramBytes = GQA.paramCount(WIDE, { exact: true }) * 4; // ~5.8 MB
    const limit = GQA.setMemoryLimit(GQA.memory!.inUse + paramBytes + 4 * MiB);
    expect(GQA.memory!.limit).toBe(limit);
    const a = await GQA.build(WIDE);
    const before = GQA.memory!.inUse;
    const err = await expectCode(() => GQA.build(WIDE), "OUT_OF_MEMORY", /`parameters`.*needs \d+ bytes, limit is \d+ bytes with \d+ bytes in use/);
    expect(err.message).toContain(String(paramBytes));
    expect(GQA.memory!.inUse).toBe(before); // nothing held by the failed build
    // A KV cache (2 layers x K,V x 2 kv heads x 64 x 100k positions x 4 B = 205 MB) and an
    // input whose working buffers (~18 MB) do not fit next to model `a`.
    await expectCode(() => a.session({ maxLen: 100_000 }), "OUT_OF_MEMORY", /`kv cache`/);
    const x = values(2000 * 8);
    await expectCode(() => a.forward(x, [1, 2000, 8]), "OUT_OF_MEMORY", /`forward activations`/);
    expect(GQA.memory!.inUse).toBe(before);
    a.dispose();
    // The same requests now fit.
    const b = await GQA.build(WIDE);
    const y = await b.forward(x.subarray(0, 200 * 8), [1, 200, 8]);
    expect(y.dims).toEqual([1, 256]);
    expect(Array.from(y.data).every(Number.isFinite)).toBe(true);
    GQA.setMemoryLimit(null);
    const s = await b.session({ maxLen: 100_000 });
    s.dispose();
    b.dispose();
  });

  it("training: the optimiser state (3 x parameters) is checked against the budget", async () => {
    const opts = { ...WIDE, head: { type: "classification" as const, numClasses: 3 } };
    const m = await GQA.build(opts);
    const paramBytes = GQA.memory!.inUse;
    GQA.setMemoryLimit(GQA.memory!.inUse + paramBytes); // room for 1x, not 3x
    const data = { x: values(6 * 4 * 8), dims: [6, 4, 8], labels: new Uint32Array([0, 1, 2, 0, 1, 2]) };
    await expectCode(() => m.fit(data, { epochs: 1, batchSize: 3 }), "OUT_OF_MEMORY", /optimiser state/);
    GQA.setMemoryLimit(null);
    const h = await m.fit(data, { epochs: 1, batchSize: 3 });
    expect(h.epochs.length).toBe(1);
    m.dispose();
  });

  it("rejects limits that are not whole byte counts >= 1", () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, "1" as unknown as number]) {
      expect(() => GQA.setMemoryLimit(bad)).toThrowError(/memoryLimit/);
    }
  });

  it("a 5 GiB KV cache: native fits it under the machine's memory, wasm refuses it (4 GiB address space)", async (ctx) => {
    // 16 rows x 655,360 positions x 2 layers x (K,V) x 2 kv heads x 16 x 4 B = 5.37 GB (zeroed
    // pages are not touched until written, so this costs no real memory on native).
    const cfg = { embedDim: 4, hiddenSize: 64, numHeads: 4, numKvHeads: 2, numLayers: 2, dropout: 0 };
    const m = await GQA.build(cfg);
    if (GQA.backend === "wasm") {
      await expectCode(() => m.session({ batch: 16, maxLen: 655_360 }), "OUT_OF_MEMORY", /`kv cache`.*limit is 4294967296 bytes/);
    } else {
      // A machine (or cgroup) with under 12 GiB: reported as skipped, with the limit found.
      if (GQA.memory!.limit < 12 * GiB) ctx.skip(`needs a 12 GiB memory limit, this machine's is ${(GQA.memory!.limit / GiB).toFixed(1)} GiB`);
      const s = await m.session({ batch: 16, maxLen: 655_360 });
      expect(GQA.memory!.inUse).toBeGreaterThan(5 * GiB);
      const y = await s.push(values(16 * 2 * 4), [16, 2, 4]);
      expect(y.dims).toEqual([16, 64]);
      s.dispose();
      expect(GQA.memory!.inUse).toBeLessThan(GiB);
    }
    m.dispose();
  });
});

describe(`NaN and infinity in inputs (${BACKEND})`, () => {
  const cfg: GqaOptions = { embedDim: 3, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, dropout: 0 };
  let m: Model;
  beforeAll(async () => {
    m = await GQA.build({ ...cfg, head: { type: "classification", numClasses: 2 } });
  });

  it("are refused at valid positions with INVALID_INPUT naming the element", async () => {
    for (const [bad, shown] of [
      [Number.NaN, "NaN"],
      [Number.POSITIVE_INFINITY, "inf"],
      [Number.NEGATIVE_INFINITY, "-inf"],
    ] as const) {
      const x = values(2 * 4 * 3);
      x[(1 * 4 + 2) * 3 + 1] = bad; // input[1, 2, 1]
      const e = await expectCode(() => m.forward(x, [2, 4, 3]), "INVALID_INPUT", /input\[1, 2, 1\]/);
      expect(e.message).toContain(shown);
      await expectCode(() => m.predict(x, [2, 4, 3]), "INVALID_INPUT", /input\[1, 2, 1\]/);
      await expectCode(() => m.attentionMaps(x, [2, 4, 3]), "INVALID_INPUT", /input\[1, 2, 1\]/);
      const s = await m.session({ batch: 2, maxLen: 8 });
      await expectCode(() => s.push(x, [2, 4, 3]), "INVALID_INPUT", /input\[1, 2, 1\]/);
      s.dispose();
      await expectCode(() => m.fit({ x, dims: [2, 4, 3], labels: new Uint32Array([0, 1]) }, { epochs: 1 }), "INVALID_INPUT", /data\[1, 2, 1\]/);
    }
  });

  it("are ignored at padded positions (not read): the result equals the zero-padded one", async () => {
    const x = values(2 * 4 * 3);
    x.fill(Number.NaN, (1 * 4 + 2) * 3); // row 1, positions 2..3
    const y = await m.forward(x, [2, 4, 3], { lengths: [4, 2] });
    const z = x.map((v) => (Number.isNaN(v) ? 0 : v));
    const ref = await m.forward(z, [2, 4, 3], { lengths: [4, 2] });
    expect(Array.from(y.data)).toEqual(Array.from(ref.data));
    const s = await m.session({ batch: 2, maxLen: 8 });
    const p = await s.push(x, [2, 4, 3], { lengths: [4, 2] });
    expect(Array.from(p.data).every(Number.isFinite)).toBe(true);
    s.dispose();
  });

  it("the standalone attention layer follows the same policy", async () => {
    const layer = await GQA.buildGqaAttention({ hiddenSize: 8, numHeads: 2, numKvHeads: 1 });
    const x = values(1 * 3 * 8);
    x[5] = Number.NaN;
    await expectCode(() => layer.forward(x, [1, 3, 8]), "INVALID_INPUT", /input\[0, 0, 5\]/);
    layer.dispose();
  });
});

describe(`pathological inputs give finite outputs (${BACKEND})`, () => {
  const T = 5;
  const E = 6;
  const cases: Array<[string, (i: number) => number]> = [
    ["all zeros", () => 0],
    ["all ones", () => 1],
    ["+100", () => 100],
    ["-100", () => -100],
    ["+1e4", () => 1e4],
    ["-1e4", () => -1e4],
    ["alternating +-1e4", (i) => (i % 2 ? 1e4 : -1e4)],
    ["one huge outlier (1e15) among small values", (i) => (i === 7 ? 1e15 : ((i % 5) - 2) * 0.01)],
  ];
  for (const outputMode of ["last_timestep", "all", "mean_pool"] as const) {
    for (const variant of [{ embedDim: E }, { embedDim: E, rope: true }, { embedDim: 16, yarn: true }] as const) {
      it(`${outputMode}, ${JSON.stringify(variant)}`, async () => {
        const e = variant.embedDim;
        const m = await GQA.build({ hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, dropout: 0, outputMode, ...variant });
        for (const [name, f] of cases) {
          const x = Float32Array.from({ length: 2 * T * e }, (_, i) => f(i));
          const y = await m.forward(x, [2, T, e], { lengths: [T, 3] });
          const bad = Array.from(y.data).findIndex((v) => !Number.isFinite(v));
          expect(bad, `${name}: output[${bad}] = ${y.data[bad]}`).toBe(-1);
        }
        m.dispose();
      });
    }
  }

  it("standalone attention layer with rope", async () => {
    const layer = await GQA.buildGqaAttention({ hiddenSize: 16, numHeads: 4, numKvHeads: 2, rope: true });
    for (const [name, f] of cases) {
      const x = Float32Array.from({ length: 2 * T * 16 }, (_, i) => f(i));
      const y = await layer.forward(x, [2, T, 16]);
      expect(Array.from(y.data).every(Number.isFinite), name).toBe(true);
    }
    layer.dispose();
  });
});

describe(`a Rust panic inside a call (${BACKEND})`, () => {
  afterEach(() => setPanicSite(null));

  it("comes back as GqaError INTERNAL naming the panic, and the backend keeps working", async () => {
    const cfg = { embedDim: 3, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 1, dropout: 0, head: { type: "classification" as const, numClasses: 2 } };
    const m = await GQA.build(cfg);
    const x = values(2 * 4 * 3);
    const ref = await m.forward(x, [2, 4, 3]);
    const inUse = GQA.memory!.inUse;

    setPanicSite("forward");
    await expectCode(() => m.forward(x, [2, 4, 3]), "INTERNAL", /forced panic at `forward`/);
    setPanicSite("push");
    const s = await m.session({ batch: 2, maxLen: 8 });
    const kvBytes = s.kvCacheBytes;
    await expectCode(() => s.push(x, [2, 4, 3]), "INTERNAL", /forced panic at `push`/);
    setPanicSite("step");
    await expectCode(() => m.fit({ x, dims: [2, 4, 3], labels: new Uint32Array([0, 1]) }, { epochs: 1 }), "INTERNAL", /forced panic at `step`/);
    setPanicSite(null);

    // The same objects and new ones work, with the same numbers; the budget leaked nothing.
    expect(Array.from((await m.forward(x, [2, 4, 3])).data)).toEqual(Array.from(ref.data));
    // A session whose push panicked may hold a half-written cache: it refuses further pushes
    // (INTERNAL, "create a new session"); dispose still works and a new session is exact.
    await expectCode(() => s.push(x, [2, 4, 3]), "INTERNAL", /panicked|recursive use/);
    expect(() => s.dispose()).not.toThrow();
    const s2 = await m.session({ batch: 2, maxLen: 8 });
    const p = await s2.push(x, [2, 4, 3]);
    const diff = Math.max(...Array.from(p.data, (v, i) => Math.abs(v - ref.data[i]!)));
    expect(diff).toBeLessThan(1e-5); // a session equals the full forward (SPEC section 4)
    s2.dispose();
    const m2 = await GQA.build(cfg);
    expect(Array.from((await m2.forward(x, [2, 4, 3])).data)).toEqual(Array.from(ref.data));
    const h = await m2.fit({ x, dims: [2, 4, 3], labels: new Uint32Array([0, 1]) }, { epochs: 1 });
    expect(Number.isFinite(h.epochs[0]!.loss)).toBe(true);
    m2.dispose();
    if (GQA.backend === "native") expect(GQA.memory!.inUse).toBe(inUse);
    // wasm32 cannot unwind: the session and the trainer whose calls trapped stay borrowed and
    // cannot be freed (KV cache; gradients and AdamW moments, 3 x the parameters, which `inUse`
    // here holds once): lost to this instance. Nothing else leaks.
    else expect(GQA.memory!.inUse - inUse).toBeLessThanOrEqual(kvBytes * 2 + 3 * inUse + 4096);
    expect(() => m.dispose()).not.toThrow();
    expect(() => m.dispose()).not.toThrow();
  });
});
