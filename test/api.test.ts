/**
 * The TypeScript API on one backend, chosen by GQA_BACKEND (scripts/test.sh runs this file once
 * with `native` and once with `wasm`). Values are checked against independent references: the
 * SPEC formulas computed here, the PyTorch fixtures in fixtures/ (read with an independent
 * safetensors reader), and the other backend.
 */
import { existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

import { GQA, type GqaOptions, type Model, Tensor } from "gqa";
import { toGqaError } from "../ts/errors.js";
import { maxAbsDiff, randomData, readSafetensors } from "./helpers/safetensors.js";
import { expectCode, BACKEND, NO_WASM, OTHER } from "./helpers/expect.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");


/** SPEC section 3 approximate count (Edifice param_count/1), computed independently. */
function approxCount(o: Required<Pick<GqaOptions, "embedDim" | "hiddenSize" | "numHeads" | "numKvHeads" | "numLayers">>): number {
  const H = o.hiddenSize, D = H / o.numHeads, q = o.numHeads * D, kv = o.numKvHeads * D;
  const input = o.embedDim !== H ? o.embedDim * H : 0;
  return input + o.numLayers * (2 * H * q + 2 * H * kv + 8 * H * H);
}

/** SPEC section 3 tensor list, every element counted. */
function exactCount(o: Required<Pick<GqaOptions, "embedDim" | "hiddenSize" | "numHeads" | "numKvHeads" | "numLayers">>): number {
  const H = o.hiddenSize, D = H / o.numHeads, q = o.numHeads * D, kv = o.numKvHeads * D, E = o.embedDim;
  const shapes: number[][] = [];
  if (E !== H) shapes.push([H, E], [H]);
  for (let l = 0; l < o.numLayers; l++) {
    shapes.push([H], [H]); // attn_norm
    shapes.push([q, H], [q], [kv, H], [kv], [kv, H], [kv], [H, q], [H]); // q,k,v,out
    shapes.push([H], [H]); // ffn_norm
    shapes.push([4 * H, H], [4 * H], [H, 4 * H], [H]); // ffn_up, ffn_down
  }
  shapes.push([H], [H]); // final_norm
  return shapes.reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
}

const SMALL: GqaOptions = { embedDim: 6, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, seed: 7 };

describe(`gqa API on backend=${BACKEND}`, () => {
  beforeAll(async () => {
    GQA.reset();
    await GQA.init();
  });

  it(`runs on the backend GQA_BACKEND names (${BACKEND})`, () => {
    console.log(`[api.test] backend=${GQA.backend} file=${GQA.backendFile}`);
    if (BACKEND !== "auto") expect(GQA.backend).toBe(BACKEND);
    else expect(["native", "wasm"]).toContain(GQA.backend);
  });

  describe("options", () => {
    it("rejects bad options with INVALID_OPTION naming the option", async () => {
      await expectCode(() => GQA.validate({ embedDim: 6, numHeads: 7 }), "INVALID_OPTION", /hiddenSize.*multiple of numHeads=7.*256/);
      await expectCode(() => GQA.validate({ embedDim: 6, numHeads: 8, numKvHeads: 3 }), "INVALID_OPTION", /numKvHeads.*divisor of numHeads=8.*3/);
      await expectCode(() => GQA.validate({ embedDim: 0 }), "INVALID_OPTION", /embedDim/);
      await expectCode(() => GQA.validate({ embedDim: 4, dropout: 1 }), "INVALID_OPTION", /dropout/);
      await expectCode(() => GQA.validate({ embedDim: 4, hiddenSize: 12, numHeads: 4, rope: true }), "INVALID_OPTION", /headDim/);
      await expectCode(() => GQA.validate({ embedDim: 4, numHeadz: 2 } as unknown as GqaOptions), "INVALID_OPTION", /numHeadz/);
      await expectCode(() => GQA.validate({} as GqaOptions), "INVALID_OPTION", /embedDim/);
      await expectCode(() => GQA.validate({ embedDim: 4, numHeads: "8" } as unknown as GqaOptions), "INVALID_OPTION", /numHeads/);
      await expectCode(() => GQA.validate(null as unknown as GqaOptions), "INVALID_OPTION", /options/);
      expect(() => GQA.validate({ embedDim: 4 })).not.toThrow();
    });

    it("rejects sizes that cannot fit in memory with OUT_OF_MEMORY", async () => {
      await expectCode(() => GQA.validate({ embedDim: 4, hiddenSize: 65536, numHeads: 1, numKvHeads: 1 }), "OUT_OF_MEMORY");
    });

    it("paramCount matches the SPEC formulas (approximate and exact)", () => {
      const cases = [
        { embedDim: 12, hiddenSize: 256, numHeads: 8, numKvHeads: 2, numLayers: 4 },
        { embedDim: 64, hiddenSize: 64, numHeads: 4, numKvHeads: 1, numLayers: 3 },
        { embedDim: 7, hiddenSize: 48, numHeads: 6, numKvHeads: 6, numLayers: 1 },
        { embedDim: 1, hiddenSize: 1024, numHeads: 16, numKvHeads: 4, numLayers: 24 },
      ];
      for (const c of cases) {
        expect(GQA.paramCount(c)).toBe(approxCount(c));
        expect(GQA.paramCount(c, { exact: true })).toBe(exactCount(c));
      }
      // Defaults filled in by the core: H=256, NH=8, NKV=2, L=4.
      expect(GQA.paramCount({ embedDim: 12 })).toBe(approxCount({ embedDim: 12, hiddenSize: 256, numHeads: 8, numKvHeads: 2, numLayers: 4 }));
    });

    it("outputSize, kvCacheBytesPerToken, recommendedDefaults", () => {
      expect(GQA.outputSize({ embedDim: 3, hiddenSize: 96, numHeads: 4 })).toBe(96);
      expect(GQA.outputSize({ embedDim: 3 })).toBe(256);
      // 2 * L * NKV * D * 4 bytes
      expect(GQA.kvCacheBytesPerToken({ embedDim: 3, hiddenSize: 128, numHeads: 8, numKvHeads: 2, numLayers: 6 })).toBe(2 * 6 * 2 * 16 * 4);
      expect(GQA.recommendedDefaults()).toEqual({ hiddenSize: 256, numHeads: 8, numKvHeads: 2, numLayers: 4, seqLenHint: 60, dropout: 0.1 });
    });

    it("windowSize, the deprecated name of seqLenHint, still works with a one-time warning", async () => {
      const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
      try {
        const old = { embedDim: 3, hiddenSize: 8, numHeads: 2, numKvHeads: 1, numLayers: 1, windowSize: 33 };
        expect(() => GQA.validate(old)).not.toThrow();
        const m = await GQA.build(old);
        try {
          expect(m.config.seqLenHint).toBe(33);
          expect("windowSize" in m.config).toBe(false);
        } finally {
          m.dispose();
        }
        expect(warn.mock.calls.filter((c) => String(c[0]).includes("`windowSize` is deprecated")).length).toBe(1);
        await expectCode(() => GQA.validate({ ...old, seqLenHint: 33 }), "INVALID_OPTION");
      } finally {
        warn.mockRestore();
      }
    });
  });

  describe("backend loading", () => {
    const saved = { native: process.env.GQA_NATIVE_PATH, wasm: process.env.GQA_WASM_PATH };
    afterAll(async () => {
      if (saved.native === undefined) delete process.env.GQA_NATIVE_PATH;
      else process.env.GQA_NATIVE_PATH = saved.native;
      if (saved.wasm === undefined) delete process.env.GQA_WASM_PATH;
      else process.env.GQA_WASM_PATH = saved.wasm;
      GQA.reset();
      await GQA.init();
    });

    it("pure functions before init throw NOT_INITIALIZED", async () => {
      GQA.reset();
      expect(GQA.backend).toBeNull();
      await expectCode(() => GQA.paramCount({ embedDim: 4 }), "NOT_INITIALIZED", /GQA\.init/);
      await GQA.init();
      expect(GQA.paramCount({ embedDim: 4 })).toBeGreaterThan(0);
    });

    it("a forced native backend that cannot load names the file tried (GQA_NATIVE_PATH)", async () => {
      const missing = join(ROOT, "no-such-dir", "gqa.missing.node");
      process.env.GQA_NATIVE_PATH = missing;
      GQA.reset();
      await expectCode(() => GQA.init({ backend: "native" }), "BACKEND_LOAD_FAILED", new RegExp(`native backend: cannot load ${missing.replace(/[.\\/]/g, "\\$&")}: file not found`));
      expect(GQA.backend).toBeNull();
      delete process.env.GQA_NATIVE_PATH;
    });

    it("a native addon path that is not an addon fails with the loader's reason", async () => {
      const notAddon = join(ROOT, "package.json");
      process.env.GQA_NATIVE_PATH = notAddon;
      GQA.reset();
      await expectCode(() => GQA.init({ backend: "native" }), "BACKEND_LOAD_FAILED", /package\.json/);
      delete process.env.GQA_NATIVE_PATH;
    });

    it("a forced wasm backend that cannot load names the file tried (GQA_WASM_PATH)", async () => {
      const missing = join(ROOT, "no-such-dir", "gqa_wasm_bg.wasm");
      process.env.GQA_WASM_PATH = missing;
      GQA.reset();
      await expectCode(() => GQA.init({ backend: "wasm" }), "BACKEND_LOAD_FAILED", /wasm backend: cannot load .*no-such-dir\/gqa_wasm_bg\.wasm: file not found/);
      delete process.env.GQA_WASM_PATH;
    });

    it.skipIf(NO_WASM)("auto falls back to wasm when the native addon is missing", async () => {
      process.env.GQA_NATIVE_PATH = join(ROOT, "no-such-dir", "x.node");
      GQA.reset();
      await GQA.init({ backend: "auto" });
      expect(GQA.backend).toBe("wasm");
      delete process.env.GQA_NATIVE_PATH;
    });

    it("an unknown backend name is rejected", async () => {
      GQA.reset();
      await expectCode(() => GQA.init({ backend: "gpu" as "wasm" }), "BACKEND_LOAD_FAILED", /unknown backend "gpu"/);
    });
  });

  it("maps binding errors: '<CODE>: message', wasm traps -> INTERNAL", () => {
    const e1 = toGqaError(new Error("TENSOR_MISMATCH: tensor `x` has the wrong shape"));
    expect([e1.code, e1.message]).toEqual(["TENSOR_MISMATCH", "tensor `x` has the wrong shape"]);
    expect(toGqaError(new WebAssembly.RuntimeError("unreachable")).code).toBe("INTERNAL");
    expect(toGqaError(new Error("something else")).code).toBe("INTERNAL");
  });

  describe("model", () => {
    let model: Model;
    beforeAll(async () => {
      model = await GQA.build(SMALL);
    });

    it("build: backend, config with defaults, exact paramCount", () => {
      expect(model.backend).toBe(GQA.backend);
      expect(model.config).toEqual({
        embedDim: 6, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, dropout: 0.1, rope: false, ropeTheta: 10000, yarn: false,
        yarnScale: 8, yarnOriginalMaxPosition: 2048, seqLenHint: 60, outputMode: "last_timestep", seed: 7,
      });
      expect(model.paramCount).toBe(exactCount({ embedDim: 6, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2 }));
      expect(model.weightsDigest()).toMatch(/^[0-9a-f]{16}$/);
    });

    it("forward shapes for each output mode, sync = async", async () => {
      const x = randomData(3 * 5 * 6, 3);
      for (const [mode, dims] of [["last_timestep", [3, 16]], ["mean_pool", [3, 16]], ["all", [3, 5, 16]]] as const) {
        const m = await GQA.build({ ...SMALL, outputMode: mode });
        const y = await m.forward(x, [3, 5, 6]);
        expect(y).toBeInstanceOf(Tensor);
        expect(y.dims).toEqual(dims);
        expect(y.data.length).toBe(dims.reduce((a, b) => a * b, 1));
        expect(y.data.every(Number.isFinite)).toBe(true);
        expect(maxAbsDiff(m.forwardSync(x, [3, 5, 6]).data, y.data)).toBe(0);
        m.dispose();
      }
    });

    it("output modes agree with each other: last_timestep and mean_pool derive from all", async () => {
      const x = randomData(2 * 4 * 6, 11);
      const all = await (await GQA.build({ ...SMALL, outputMode: "all" })).forward(x, [2, 4, 6]);
      const last = await (await GQA.build({ ...SMALL, outputMode: "last_timestep" })).forward(x, [2, 4, 6]);
      const mean = await (await GQA.build({ ...SMALL, outputMode: "mean_pool" })).forward(x, [2, 4, 6]);
      for (let b = 0; b < 2; b++) {
        for (let k = 0; k < 16; k++) {
          expect(last.at(b, k)).toBeCloseTo(all.at(b, 3, k), 6);
          const avg = [0, 1, 2, 3].reduce((s, t) => s + all.at(b, t, k), 0) / 4;
          expect(mean.at(b, k)).toBeCloseTo(avg, 5);
        }
      }
    });

    it("batch 0 returns an empty tensor of the right shape", async () => {
      const y = await model.forward(new Float32Array(0), [0, 5, 6]);
      expect(y.dims).toEqual([0, 16]);
      expect(y.data.length).toBe(0);
      const all = await GQA.build({ ...SMALL, outputMode: "all" });
      expect((all.forwardSync(new Float32Array(0), [0, 5, 6])).dims).toEqual([0, 5, 16]);
    });

    it("rejects bad inputs with INVALID_INPUT naming the input", async () => {
      await expectCode(() => model.forward(new Float32Array(30), [5, 6]), "INVALID_INPUT", /dims/);
      await expectCode(() => model.forward(new Float32Array(35), [1, 5, 7]), "INVALID_INPUT", /embedDim|dims/);
      await expectCode(() => model.forward(new Float32Array(29), [1, 5, 6]), "INVALID_INPUT", /input/);
      await expectCode(() => model.forward(new Float32Array(0), [1, 0, 6]), "INVALID_INPUT", /dims/);
      await expectCode(() => model.forward(new Float32Array(60), [2, 5, 6], { lengths: [5, 6] }), "INVALID_INPUT", /lengths/);
      await expectCode(() => model.forward(new Float32Array(60), [2, 5, 6], { lengths: [0, 5] }), "INVALID_INPUT", /lengths/);
      await expectCode(() => model.forward(new Float32Array(60), [2, 5, 6], { lengths: [5] }), "INVALID_INPUT", /lengths/);
      await expectCode(() => model.forward([1, 2] as unknown as Float32Array, [1, 1, 2]), "INVALID_INPUT", /Float32Array/);
      await expectCode(() => model.forwardSync(new Float32Array(60), [2, -5, 6]), "INVALID_INPUT", /dims/);
    });

    it("padded batches equal each sequence run alone; padded values (NaN) do not matter", async () => {
      const m = await GQA.build({ ...SMALL, outputMode: "all", rope: true });
      const T = 6, E = 6, lengths = [6, 3, 1];
      const x = randomData(3 * T * E, 5);
      for (let b = 0; b < 3; b++) for (let t = lengths[b]!; t < T; t++) for (let e = 0; e < E; e++) x[(b * T + t) * E + e] = NaN;
      const y = await m.forward(x, [3, T, E], { lengths });
      for (let b = 0; b < 3; b++) {
        const L = lengths[b]!;
        const alone = await m.forward(x.slice(b * T * E, (b * T + L) * E), [1, L, E]);
        for (let t = 0; t < T; t++) {
          for (let k = 0; k < 16; k++) {
            const v = y.at(b, t, k);
            if (t < L) expect(Math.abs(v - alone.at(0, t, k))).toBeLessThanOrEqual(1e-5);
            else expect(v === 0, `padded output at b=${b} t=${t} is ${v}`).toBe(true);
          }
        }
      }
    });

    it("save/load round trip: same digest, same outputs, config from metadata", async () => {
      const bytes = await model.save();
      expect(bytes).toBeInstanceOf(Uint8Array);
      const m2 = await GQA.load(bytes);
      expect(m2.weightsDigest()).toBe(model.weightsDigest());
      expect(m2.config).toEqual(model.config);
      const x = randomData(2 * 4 * 6, 9);
      expect(maxAbsDiff((await m2.forward(x, [2, 4, 6])).data, (await model.forward(x, [2, 4, 6])).data)).toBe(0);
      // from a path (Node), and with strict loading (the file holds only model tensors)
      const { mkdtempSync } = await import("node:fs");
      const { tmpdir } = await import("node:os");
      const path = join(mkdtempSync(join(tmpdir(), "gqa-")), "m.safetensors");
      await model.saveFile(path);
      expect((await GQA.load(path, { strict: true })).weightsDigest()).toBe(model.weightsDigest());
    });

    it("load errors: malformed bytes, missing file, strict extra tensors", async () => {
      await expectCode(() => GQA.load(new Uint8Array([1, 2, 3])), "MALFORMED_FILE", /^the given bytes: expected a model file \(a safetensors file written by model\.save\(\)\/model\.saveFile\(\) or gqa train\), found malformed safetensors file: /);
      await expectCode(() => GQA.load(join(ROOT, "no-such.safetensors")), "INVALID_INPUT", /no-such\.safetensors/);
      // The fixture is committed: a missing file fails here (it used to skip this check silently).
      const fixture = join(ROOT, "fixtures", "batch1.safetensors");
      await expectCode(() => GQA.load(fixture, { strict: true }), "UNEXPECTED_PARAMETER", /expected\.out|input\.x/);
    });

    it("loading a file that is not a model names the file and says what a model file is", async () => {
      const { mkdtempSync, writeFileSync } = await import("node:fs");
      const { tmpdir } = await import("node:os");
      const dir = mkdtempSync(join(tmpdir(), "gqa-not-a-model-"));
      const text = join(dir, "notes.txt");
      writeFileSync(text, "these are notes, not a model\n");
      const random = join(dir, "random.bin");
      const { mulberry32 } = await import("./helpers/random.js");
      const r = mulberry32(12345);
      writeFileSync(random, Uint8Array.from({ length: 4096 }, () => Math.floor(r() * 256)));
      const what = "expected a model file \\(a safetensors file written by model\\.save\\(\\)/model\\.saveFile\\(\\) or gqa train\\), found malformed safetensors file: ";
      const esc = (p: string) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      for (const file of [text, random]) {
        const e = await expectCode(() => GQA.load(file), "MALFORMED_FILE", new RegExp(`^${esc(file)}: ${what}\\S`));
        // The core's reason is kept as the field.
        expect(e.message.endsWith(`found malformed safetensors file: ${e.reason}`)).toBe(true);
        await expectCode(() => GQA.loadEnsemble(file), "MALFORMED_FILE", new RegExp(`^${esc(file)}: ${what}`));
      }
    });

    it("dispose: later calls throw DISPOSED", async () => {
      const m = await GQA.build(SMALL);
      m.dispose();
      m.dispose();
      expect(m.disposed).toBe(true);
      await expectCode(() => m.forward(new Float32Array(6), [1, 1, 6]), "DISPOSED");
      await expectCode(() => m.weightsDigest(), "DISPOSED");
      await expectCode(() => m.save(), "DISPOSED");
    });

    it("16 concurrent async forwards equal the sequential results", async () => {
      const m = await GQA.build({ ...SMALL, hiddenSize: 32, outputMode: "all" });
      const inputs = Array.from({ length: 16 }, (_, i) => randomData(2 * 9 * 6, 100 + i));
      const sequential = inputs.map((x) => m.forwardSync(x, [2, 9, 6]));
      const concurrent = await Promise.all(inputs.map((x) => m.forward(x, [2, 9, 6])));
      for (let i = 0; i < 16; i++) expect(maxAbsDiff(concurrent[i]!.data, sequential[i]!.data)).toBe(0);
    });

    it("same seed, same weights; different seed, different weights", async () => {
      expect((await GQA.build(SMALL)).weightsDigest()).toBe(model.weightsDigest());
      expect((await GQA.build({ ...SMALL, seed: 8 })).weightsDigest()).not.toBe(model.weightsDigest());
    });
  });

  describe("attention layer", () => {
    it("builds, runs [B,T,H] -> [B,T,H], round-trips", async () => {
      const a = await GQA.buildGqaAttention({ hiddenSize: 16, numHeads: 4, numKvHeads: 2, seed: 3 });
      expect(a.paramCount).toBe(16 * 16 + 16 + 2 * (8 * 16 + 8) + 16 * 16 + 16);
      const x = randomData(2 * 3 * 16, 4);
      const y = await a.forward(x, [2, 3, 16]);
      expect(y.dims).toEqual([2, 3, 16]);
      const a2 = await GQA.loadGqaAttention(await a.save());
      expect(a2.weightsDigest()).toBe(a.weightsDigest());
      expect(maxAbsDiff(a2.forwardSync(x, [2, 3, 16]).data, y.data)).toBe(0);
      await expectCode(() => GQA.buildGqaAttention({ hiddenSize: 16, numHeads: 3 }), "INVALID_OPTION");
    });
  });

  // 1e-5 absolute, as in crates/gqa-core/tests/fixtures.rs (float64 references from float32-exact
  // values; measured <= 2.4e-6 there, long_rope_8_2 the largest).
  describe("PyTorch reference fixtures (fixtures/*.safetensors) <= 1e-5", () => {
    const dir = join(ROOT, "fixtures");
    const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort() : [];
    it("fixtures exist (the 24 committed files, long_rope_8_2 among them)", () => {
      expect(files.length).toBeGreaterThanOrEqual(24);
      expect(files).toContain("long_rope_8_2.safetensors");
    });
    for (const f of files) {
      it(f, async () => {
        const st = readSafetensors(join(dir, f));
        const kind = JSON.parse(st.metadata.gqa_fixture ?? "{}").kind as string;
        const x = st.tensors.get("input.x")!;
        const expected = st.tensors.get("expected.out")!;
        const lengths = st.tensors.get("input.lengths")?.data as number[] | undefined;
        const layer = kind === "attention" ? await GQA.loadGqaAttention(st.bytes) : await GQA.load(st.bytes);
        const y = await layer.forward(x.data as Float32Array, x.shape, lengths ? { lengths } : {});
        expect(y.dims).toEqual(expected.shape);
        const err = maxAbsDiff(y.data, expected.data as Float32Array);
        expect(err, `${f}: max |diff| = ${err}`).toBeLessThanOrEqual(1e-5);
        layer.dispose();
      });
    }
  });

  describe.skipIf(NO_WASM)(`agreement with the ${OTHER} backend`, () => {
    it("same seed: bitwise-equal weights; forward within 1e-5 (model and attention)", async () => {
      const configs: GqaOptions[] = [
        { ...SMALL, outputMode: "all" },
        { embedDim: 5, hiddenSize: 32, numHeads: 8, numKvHeads: 2, numLayers: 2, rope: true, seed: 42, outputMode: "mean_pool" },
        { embedDim: 8, hiddenSize: 8, numHeads: 2, numKvHeads: 1, numLayers: 1, yarn: true, seed: 1 },
      ];
      const mine = configs.map(() => null as Model | null);
      try {
        for (let i = 0; i < configs.length; i++) mine[i] = await GQA.build(configs[i]!);
        const attn = await GQA.buildGqaAttention({ hiddenSize: 16, numHeads: 4, numKvHeads: 1, rope: true, seed: 9 });
        await GQA.init({ backend: OTHER });
        expect(GQA.backend).toBe(OTHER);
        for (let i = 0; i < configs.length; i++) {
          const c = configs[i]!;
          const other = await GQA.build(c);
          expect(other.backend).toBe(OTHER);
          expect(other.weightsDigest()).toBe(mine[i]!.weightsDigest());
          const x = randomData(3 * 7 * c.embedDim, 20 + i);
          const opts = { lengths: [7, 2, 5] };
          const a = await mine[i]!.forward(x, [3, 7, c.embedDim], opts);
          const b = await other.forward(x, [3, 7, c.embedDim], opts);
          expect(b.dims).toEqual(a.dims);
          expect(maxAbsDiff(a.data, b.data)).toBeLessThanOrEqual(1e-5);
          // Lengths may come as a typed array (as `fit` data often carries them): same result.
          const typed = await mine[i]!.forward(x, [3, 7, c.embedDim], { lengths: Uint32Array.from(opts.lengths) });
          expect(Array.from(typed.data)).toEqual(Array.from(a.data));
        }
        const attnOther = await GQA.buildGqaAttention({ hiddenSize: 16, numHeads: 4, numKvHeads: 1, rope: true, seed: 9 });
        expect(attnOther.weightsDigest()).toBe(attn.weightsDigest());
        const x = randomData(2 * 5 * 16, 77);
        expect(maxAbsDiff((await attn.forward(x, [2, 5, 16])).data, (await attnOther.forward(x, [2, 5, 16])).data)).toBeLessThanOrEqual(1e-5);
      } finally {
        GQA.reset();
        await GQA.init();
      }
    });
  });
});
