/**
 * Sliding-window attention (SPEC section 7) through the TypeScript API on the backend chosen by
 * GQA_BACKEND: Mistral / Qwen2 attention layers loaded with loadGqaAttention against
 * transformers (fixtures/hf_window, written by scripts/gen_window_fixtures.py), sessions of a
 * windowed model against its full forward, and a stream far past the window at constant cache
 * size.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { beforeAll, describe, expect, it } from "vitest";

import { GQA } from "gqa";
import { BACKEND, expectCode } from "./helpers/expect.js";
import { findPython, REPO_ROOT } from "./helpers/python.js";
import { maxAbsDiff, readSafetensors } from "./helpers/safetensors.js";

const py = findPython(["torch", "safetensors", "numpy"]);

const DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "hf_window");
const MODULES = (JSON.parse(readFileSync(join(DIR, "index.json"), "utf8")) as { modules: string[] }).modules;

/** A deterministic stream: `t` positions of `e` features from position `p0`. */
function stream(p0: number, t: number, e: number): Float32Array {
  const x = new Float32Array(t * e);
  for (let p = 0; p < t; p++) for (let k = 0; k < e; k++) x[p * e + k] = Math.sin((p0 + p) * 0.37 + k * 1.3) * 1.5;
  return x;
}

describe(`sliding-window attention (${BACKEND})`, () => {
  beforeAll(async () => {
    GQA.reset();
    await GQA.init();
  });

  it("the fixtures list the six transformers modules", () => {
    expect(MODULES.length).toBeGreaterThanOrEqual(6);
  });

  for (const name of MODULES) {
    it(`${name}: loadGqaAttention reads the layer's window and equals transformers (1e-4)`, async () => {
      const meta = JSON.parse(readFileSync(join(DIR, `${name}.json`), "utf8")) as { hfConfig: Record<string, unknown>; layer: number; window: number | null };
      const st = readSafetensors(join(DIR, `${name}.safetensors`));
      const x = st.tensors.get("test.input")!;
      const y = st.tensors.get("test.output")!;
      const layer = await GQA.loadGqaAttention(join(DIR, `${name}.safetensors`), { hfConfig: meta.hfConfig, layer: meta.layer });
      expect(layer.config.slidingWindow ?? null).toBe(meta.window);
      const out = await layer.forward(x.data as Float32Array, x.shape);
      expect(maxAbsDiff(out.data, y.data), name).toBeLessThanOrEqual(1e-4);
      layer.dispose();
    });
  }

  it("a windowed session streamed in chunks of 1, W and longer than the ring equals the full forward", async () => {
    const e = 4;
    const t = 300;
    const model = await GQA.build({ embedDim: e, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, slidingWindow: 6, outputMode: "all", seed: 3 });
    const x = stream(0, t, e);
    const full = await model.forward(x, [1, t, e]);
    for (const step of [1, 6, 97]) {
      const s = await model.session({});
      expect(s.maxLen).toBeNull();
      const bytes = s.kvCacheBytes;
      expect(bytes).toBe(s.capacity * s.kvCacheBytesPerToken);
      for (let p = 0; p < t; p += step) {
        const n = Math.min(step, t - p);
        const y = await s.push(x.subarray(p * e, (p + n) * e), [1, n, e], { allPositions: true });
        expect(maxAbsDiff(y.data, full.data.subarray(p * 16, (p + n) * 16)), `chunks of ${step} at ${p}`).toBeLessThanOrEqual(1e-4);
      }
      expect(s.lengths).toEqual([t]);
      expect(s.kvCacheBytes).toBe(bytes);
      s.dispose();
    }
    model.dispose();
  });

  it("a rotary stream of 20,000 positions keeps its cache size and equals a forward at positionOffset over its receptive field", async () => {
    const e = 3;
    const w = 4;
    const layers = 2;
    const model = await GQA.build({ embedDim: e, hiddenSize: 8, numHeads: 2, numKvHeads: 1, numLayers: layers, rope: true, slidingWindow: w, outputMode: "last_timestep", seed: 1 });
    const s = await model.session({});
    const bytes = s.kvCacheBytes;
    const chunk = 1000;
    const n = 20_000;
    let last: ArrayLike<number> = [];
    for (let p = 0; p < n; p += chunk) last = (await s.push(stream(p, chunk, e), [1, chunk, e])).data;
    expect(s.kvCacheBytes).toBe(bytes);
    expect(s.length).toBe(n);
    // Position n-1 reads (through the layers) the last layers*(W-1)+1 positions only.
    const field = layers * (w - 1) + 1;
    const at = await model.forward(stream(n - field, field, e), [1, field, e], { positionOffset: n - field });
    expect(maxAbsDiff(last, at.data)).toBeLessThanOrEqual(1e-4);
    // Rotary is relative: the same inputs at position 0 give the same output (angles exact at 2e4).
    const at0 = await model.forward(stream(n - field, field, e), [1, field, e]);
    expect(maxAbsDiff(last, at0.data)).toBeLessThanOrEqual(1e-4);
    await expectCode(() => model.forward(stream(0, 2, e), [1, 2, e], { positionOffset: -1 }), "INVALID_INPUT", /positionOffset/);
    s.dispose();
    model.dispose();
  });

  it("session.predict streams a windowed classifier: each step equals model.predict over the prefix", async () => {
    const e = 3;
    const t = 80;
    const model = await GQA.build({ embedDim: e, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, slidingWindow: 5, seed: 2, head: { type: "classification", numClasses: 4 } });
    const x = stream(0, t, e);
    const s = await model.session({});
    for (let p = 0; p < t; p++) {
      const y = await s.predict(x.subarray(p * e, (p + 1) * e), [1, 1, e]);
      expect(y.dims).toEqual([1, 4]);
      const want = await model.predict(x.subarray(0, (p + 1) * e), [1, p + 1, e]);
      expect(maxAbsDiff(y.data, want.data), `position ${p}`).toBeLessThanOrEqual(1e-5);
    }
    await expectCode(() => s.predict(x.subarray(0, e), [1, 1, e], { allPositions: true } as never), "INVALID_INPUT", /allPositions/);
    await expectCode(() => model.predict(x.subarray(0, e), [1, 1, e], { positionOffset: 3 } as never), "INVALID_INPUT", /positionOffset/);
    s.dispose();
    model.dispose();
    const bare = await GQA.build({ embedDim: e, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 1, slidingWindow: 5 });
    const s2 = await bare.session({});
    await expectCode(() => s2.predict(x.subarray(0, e), [1, 1, e]), "INVALID_OPTION", /head/);
    expect(s2.lengths).toEqual([0]);
    s2.dispose();
    bare.dispose();
  });

  it("slidingWindow must be an integer >= 1; a session without maxLen needs a window", async () => {
    await expectCode(() => GQA.build({ embedDim: 3, slidingWindow: 0 }), "INVALID_OPTION", /slidingWindow/);
    await expectCode(() => GQA.build({ embedDim: 3, slidingWindow: 2.5 }), "INVALID_OPTION", /slidingWindow/);
    const model = await GQA.build({ embedDim: 3, hiddenSize: 8, numHeads: 2, numKvHeads: 1, numLayers: 1 });
    await expectCode(() => model.session({}), "INVALID_INPUT", /maxLen/);
    model.dispose();
  });

  it.skipIf(!py.ok)(`the PyTorch twin (python/) gives the same windowed outputs, padded rows included${py.ok ? "" : `: SKIPPED, ${py.ok ? "" : py.reason}`}`, async () => {
    const e = 4;
    const t = 50;
    const model = await GQA.build({ embedDim: e, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, slidingWindow: 7, outputMode: "all", seed: 5 });
    const x = new Float32Array(2 * t * e);
    x.set(stream(0, t, e));
    x.set(stream(100, t, e), t * e);
    const lengths = [t, 31];
    const y = await model.forward(x, [2, t, e], { lengths });
    const dir = mkdtempSync(join(tmpdir(), "gqa-window-twin-"));
    try {
      writeFileSync(join(dir, "m.safetensors"), await model.save());
      writeFileSync(join(dir, "x.json"), JSON.stringify({ x: Array.from(x), lengths }));
      const code = [
        "import json, sys, torch",
        "from gqa_torch.io import load",
        "d = sys.argv[1]",
        "m = load(d + '/m.safetensors').model",
        "inp = json.load(open(d + '/x.json'))",
        `x = torch.tensor(inp['x'], dtype=torch.float32).reshape(2, ${t}, ${e})`,
        "with torch.no_grad(): y = m(x, torch.tensor(inp['lengths']))",
        "print(json.dumps(y.flatten().tolist()))",
      ].join("\n");
      const env = { ...process.env, PYTHONPATH: join(REPO_ROOT, "python", "src") };
      const r = spawnSync(py.python, ["-c", code, dir], { encoding: "utf8", env, timeout: 120_000 });
      expect(r.status, r.stderr).toBe(0);
      const twin = JSON.parse(r.stdout.trim().split("\n").pop()!) as number[];
      expect(maxAbsDiff(y.data, Float32Array.from(twin))).toBeLessThanOrEqual(1e-5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      model.dispose();
    }
  });
});
