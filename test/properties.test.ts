/**
 * Property tests (fast-check) through the TypeScript API, per backend (GQA_BACKEND), with the
 * other backend as the reference: random valid configs, shapes, lengths and chunkings give
 * finite outputs of the right shape that agree across backends within 1e-5, and a KV-cache
 * session equals the full forward; random invalid configs, dims, lengths, typed arrays and
 * byte strings give the documented error codes, never a crash.
 *
 * Runs per property: GQA_PROPERTY_RUNS (default 20 here; the long run in docs/building-and-testing.md uses 2000).
 * A failure prints fast-check's seed and shrunk counterexample; replay with GQA_PROPERTY_SEED.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { GQA, GqaError, type GqaOptions, type Model, type OutputMode } from "gqa";
import { randomData } from "./helpers/random.js";
import { maxAbsDiff } from "./helpers/safetensors.js";
import { BACKEND, NO_WASM, OTHER } from "./helpers/expect.js";

const RUNS = Number(process.env.GQA_PROPERTY_RUNS ?? 20);
const SEED = process.env.GQA_PROPERTY_SEED === undefined ? undefined : Number(process.env.GQA_PROPERTY_SEED);
const params = (numRuns = RUNS) => ({ numRuns, ...(SEED === undefined ? {} : { seed: SEED }) });
const TOL = 1e-5;

/** Deterministic values in [-scale, scale). */
function values(n: number, seed: number, scale = 1): Float32Array {
  return randomData(n, seed, scale);
}

/** Valid model options: GQA/MQA/MHA head maps, rotary none/RoPE/YaRN, every output mode. */
const configArb: fc.Arbitrary<GqaOptions> = fc
  .record({
    embedDim: fc.integer({ min: 1, max: 9 }),
    numKvHeads: fc.integer({ min: 1, max: 3 }),
    group: fc.integer({ min: 1, max: 3 }),
    headDim: fc.constantFrom(2, 4, 6, 8),
    numLayers: fc.integer({ min: 1, max: 2 }),
    rotary: fc.constantFrom("none", "rope", "yarn"),
    outputMode: fc.constantFrom<OutputMode>("last_timestep", "all", "mean_pool"),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  })
  // hiddenSize >= 8: LayerNorm over 2 or 4 values amplifies the backends' float32 rounding
  // differences past 1e-5 (measured up to 2.5e-5 at hiddenSize 4); such widths stay covered by
  // the finiteness and error properties.
  .filter((c) => c.numKvHeads * c.group * c.headDim >= 8)
  .map((c) => {
    const numHeads = c.numKvHeads * c.group;
    return {
      embedDim: c.embedDim,
      hiddenSize: numHeads * c.headDim,
      numHeads,
      numKvHeads: c.numKvHeads,
      numLayers: c.numLayers,
      dropout: 0,
      rope: c.rotary === "rope",
      yarn: c.rotary === "yarn",
      ...(c.rotary === "yarn" ? { yarnScale: 4, yarnOriginalMaxPosition: 4 } : {}),
      outputMode: c.outputMode,
      seed: c.seed,
    };
  });

/** A batch for a model: B in 0..3, T in 1..7, optional lengths in 1..T, values of a random scale. */
const batchArb = fc.record({
  b: fc.integer({ min: 0, max: 3 }),
  t: fc.integer({ min: 1, max: 7 }),
  padded: fc.boolean(),
  lengthSeeds: fc.array(fc.nat(), { minLength: 3, maxLength: 3 }),
  dataSeed: fc.nat(),
  // Scales where float32 LayerNorm is well conditioned: at ~1e-3 the variance nears eps (1e-5)
  // and the two backends' GEMM roundings (FMA vs not) are amplified ~300x; finiteness at such
  // scales is covered by test/hardening.test.ts.
  scale: fc.constantFrom(0.1, 1, 30),
});

/** Builds the same model on this suite's backend and on the other one. */
async function both(cfg: GqaOptions): Promise<[Model, Model]> {
  await GQA.init({ backend: OTHER });
  const other = await GQA.build(cfg);
  await GQA.init({ backend: BACKEND === "auto" ? "native" : BACKEND });
  const mine = await GQA.build(cfg);
  return [mine, other];
}

beforeAll(async () => {
  await GQA.init(BACKEND === "auto" ? {} : { backend: BACKEND });
});

describe(`properties of valid calls (${BACKEND}, reference ${OTHER})`, () => {
  it.skipIf(NO_WASM)("random configs, shapes and lengths: finite output of the right shape, equal across backends", async () => {
    await fc.assert(
      fc.asyncProperty(configArb, batchArb, async (cfg, bt) => {
        const [m, o] = await both(cfg);
        try {
          const e = cfg.embedDim;
          const h = cfg.hiddenSize!;
          const x = values(bt.b * bt.t * e, bt.dataSeed, bt.scale);
          const lengths = bt.padded ? Array.from({ length: bt.b }, (_, i) => 1 + (bt.lengthSeeds[i]! % bt.t)) : undefined;
          const y = await m.forward(x, [bt.b, bt.t, e], { lengths });
          expect(y.dims).toEqual(cfg.outputMode === "all" ? [bt.b, bt.t, h] : [bt.b, h]);
          expect(y.data.length).toBe(y.dims.reduce((a, d) => a * d, 1));
          expect(Array.from(y.data).every(Number.isFinite)).toBe(true);
          const r = await o.forward(x, [bt.b, bt.t, e], { lengths });
          expect(maxAbsDiff(y.data, r.data)).toBeLessThanOrEqual(TOL);
        } finally {
          m.dispose();
          o.dispose();
        }
      }),
      params(),
    );
  });

  it("random chunkings: a KV-cache session equals the full forward", async () => {
    await fc.assert(
      fc.asyncProperty(
        configArb,
        fc.integer({ min: 1, max: 3 }),
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 5 }),
        fc.nat(),
        async (cfg, b, chunks, seed) => {
          const m = await GQA.build(cfg);
          const e = cfg.embedDim;
          const h = cfg.hiddenSize!;
          const t = chunks.reduce((a, c) => a + c, 0);
          const x = values(b * t * e, seed);
          const full = await m.forward(x, [b, t, e]);
          const s = await m.session({ batch: b, maxLen: t });
          try {
            let pos = 0;
            let last: Float32Array = new Float32Array(0);
            for (const c of chunks) {
              // Rows of [B, c, E] from positions pos..pos+c of each sequence.
              const chunk = new Float32Array(b * c * e);
              for (let r = 0; r < b; r++) chunk.set(x.subarray((r * t + pos) * e, (r * t + pos + c) * e), r * c * e);
              const y = await s.push(chunk, [b, c, e]);
              expect(Array.from(y.data).every(Number.isFinite)).toBe(true);
              last = y.data;
              pos += c;
            }
            // Newest position of each row (for `all`: the last chunk's last row per sequence).
            const want = new Float32Array(b * h);
            const got = new Float32Array(b * h);
            const lastChunk = chunks[chunks.length - 1]!;
            for (let r = 0; r < b; r++) {
              if (cfg.outputMode === "all") {
                want.set(full.data.subarray((r * t + t - 1) * h, (r * t + t) * h), r * h);
                got.set(last.subarray((r * lastChunk + lastChunk - 1) * h, (r * lastChunk + lastChunk) * h), r * h);
              } else {
                want.set(full.data.subarray(r * h, (r + 1) * h), r * h);
                got.set(last.subarray(r * h, (r + 1) * h), r * h);
              }
            }
            expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(TOL);
          } finally {
            s.dispose();
            m.dispose();
          }
        },
      ),
      params(),
    );
  });
});

/** Runs `f`, which must fail with a GqaError whose code is one of `codes`. */
async function expectOneOf(f: () => unknown, codes: string[]): Promise<void> {
  let err: unknown;
  try {
    await f();
  } catch (e) {
    err = e;
  }
  expect(err, "expected a GqaError").toBeInstanceOf(GqaError);
  expect(codes, (err as GqaError).message).toContain((err as GqaError).code);
}

describe(`properties of invalid calls (${BACKEND})`, () => {
  const good: GqaOptions = { embedDim: 3, hiddenSize: 8, numHeads: 4, numKvHeads: 2, numLayers: 1, dropout: 0 };
  let m: Model;
  beforeAll(async () => {
    m = await GQA.build(good);
  });

  it("random invalid options: INVALID_OPTION naming the option", async () => {
    const bad = fc.oneof(
      fc.record({ k: fc.constant("embedDim"), v: fc.constantFrom<unknown>(0, -1, 1.5, "3", null, true, 2 ** 40) }),
      fc.record({ k: fc.constant("numHeads"), v: fc.constantFrom<unknown>(0, 3, -4, 2.5, "4") }),
      fc.record({ k: fc.constant("numKvHeads"), v: fc.constantFrom<unknown>(0, 3, 8, -2, 1.5) }),
      fc.record({ k: fc.constant("numLayers"), v: fc.constantFrom<unknown>(0, -1, 0.5, "2") }),
      fc.record({ k: fc.constant("dropout"), v: fc.constantFrom<unknown>(-0.1, 1, 2, "0.1") }),
      fc.record({ k: fc.constant("yarnScale"), v: fc.constantFrom<unknown>(0, -1, "8") }),
      fc.record({ k: fc.constant("outputMode"), v: fc.constantFrom<unknown>("last", "ALL", 1, null) }),
      fc.record({ k: fc.constant("rope"), v: fc.constantFrom<unknown>("yes", 1, null) }),
      fc.record({ k: fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !(s in good) && !["hiddenSize", "rope", "yarn", "yarnScale", "yarnOriginalMaxPosition", "seqLenHint", "windowSize", "outputMode", "seed", "head", "__proto__"].includes(s)), v: fc.integer() }),
    );
    await fc.assert(
      fc.asyncProperty(bad, async ({ k, v }) => {
        let err: unknown;
        try {
          const built = await GQA.build({ ...good, [k]: v } as GqaOptions);
          built.dispose();
        } catch (e) {
          err = e;
        }
        expect(err, `${k}=${JSON.stringify(v)} was accepted`).toBeInstanceOf(GqaError);
        expect((err as GqaError).code).toBe(
          // A size too large for memory (native) or for a 32-bit usize (wasm32).
          k === "embedDim" && typeof v === "number" && v > 1e6 ? ((err as GqaError).code === "INVALID_OPTION" ? "INVALID_OPTION" : "OUT_OF_MEMORY") : "INVALID_OPTION",
        );
        if ((err as GqaError).code === "OUT_OF_MEMORY") return;
        expect((err as GqaError).message).toMatch(k === "numHeads" ? /numHeads|hiddenSize/ : new RegExp(k.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
      }),
      params(),
    );
  });

  it("random bad dims, lengths and data: INVALID_INPUT", async () => {
    const arb = fc.oneof(
      fc.record({ kind: fc.constant("rank"), dims: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 0, maxLength: 5 }).filter((d) => d.length !== 3) }),
      fc.record({ kind: fc.constant("embed"), e: fc.integer({ min: 1, max: 9 }).filter((e) => e !== 3), b: fc.integer({ min: 1, max: 3 }), t: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ kind: fc.constant("length"), b: fc.integer({ min: 1, max: 3 }), t: fc.integer({ min: 1, max: 4 }), delta: fc.integer({ min: -5, max: 5 }).filter((d) => d !== 0) }),
      fc.record({ kind: fc.constant("zeroT"), b: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ kind: fc.constant("lengths"), b: fc.integer({ min: 1, max: 3 }), t: fc.integer({ min: 1, max: 4 }), ls: fc.array(fc.integer({ min: -2, max: 8 }), { minLength: 0, maxLength: 4 }) }),
      fc.record({ kind: fc.constant("array"), which: fc.constantFrom("f64", "i32", "u8", "plain", "null", "string") }),
    );
    await fc.assert(
      fc.asyncProperty(arb, async (c) => {
        switch (c.kind) {
          case "rank": {
            const n = c.dims.reduce((a, d) => a * d, 1);
            return expectOneOf(() => m.forward(new Float32Array(n), c.dims), ["INVALID_INPUT"]);
          }
          case "embed":
            return expectOneOf(() => m.forward(new Float32Array(c.b * c.t * c.e), [c.b, c.t, c.e]), ["INVALID_INPUT"]);
          case "length": {
            const n = Math.max(0, c.b * c.t * 3 + c.delta);
            return expectOneOf(() => m.forward(new Float32Array(n), [c.b, c.t, 3]), ["INVALID_INPUT"]);
          }
          case "zeroT":
            return expectOneOf(() => m.forward(new Float32Array(0), [c.b, 0, 3]), ["INVALID_INPUT"]);
          case "lengths": {
            const valid = c.ls.length === c.b && c.ls.every((l) => Number.isInteger(l) && l >= 1 && l <= c.t);
            const f = () => m.forward(new Float32Array(c.b * c.t * 3), [c.b, c.t, 3], { lengths: c.ls });
            if (valid) {
              const y = await f();
              expect(y.dims).toEqual([c.b, 8]);
              return;
            }
            return expectOneOf(f, ["INVALID_INPUT"]);
          }
          case "array": {
            const data: unknown = {
              f64: new Float64Array(6),
              i32: new Int32Array(6),
              u8: new Uint8Array(24),
              plain: [0, 0, 0, 0, 0, 0],
              null: null,
              string: "000000",
            }[c.which];
            return expectOneOf(() => m.forward(data as Float32Array, [1, 2, 3]), ["INVALID_INPUT"]);
          }
        }
      }),
      params(),
    );
  });

  it("random byte strings and mutated model files: a documented load error, never a crash", async () => {
    const file = await m.save();
    const loadCodes = ["MALFORMED_FILE", "MISSING_CONFIG", "INVALID_OPTION", "TENSOR_MISMATCH", "MISSING_PARAMETER", "UNEXPECTED_PARAMETER", "NON_FINITE_WEIGHT", "OUT_OF_MEMORY"];
    const arb = fc.oneof(
      fc.uint8Array({ maxLength: 256 }).map((b) => ({ bytes: b, mutated: false })),
      fc
        .array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 })
        .map((edits) => {
          const b = file.slice();
          // Mostly edit the 8-byte length and the JSON header, where the structure is.
          const head = Math.min(b.length, 8 + Number(new DataView(b.buffer).getBigUint64(0, true)));
          for (const [i, v] of edits) b[i % head] = v;
          return { bytes: b, mutated: true };
        }),
      fc.nat({ max: file.length - 1 }).map((n) => ({ bytes: file.slice(0, n), mutated: true })),
    );
    await fc.assert(
      fc.asyncProperty(arb, async ({ bytes }) => {
        let loaded: Model | undefined;
        try {
          loaded = await GQA.load(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(GqaError);
          expect(loadCodes, (e as GqaError).message).toContain((e as GqaError).code);
          return;
        }
        // An edit that kept the file valid (e.g. inside a metadata string): it must still run.
        try {
          const c = loaded.config;
          const y = await loaded.forward(values(2 * c.embedDim, 1), [1, 2, c.embedDim]);
          expect(Array.from(y.data).every(Number.isFinite)).toBe(true);
        } finally {
          loaded.dispose();
        }
      }),
      params(RUNS * 5),
    );
  });
});
