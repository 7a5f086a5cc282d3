/**
 * ONNX export: `model.exportOnnx()` (gqa_core::onnx::export) run in onnxruntime-node
 * and onnxruntime-web (independent ONNX implementations) and compared with gqa's own forward /
 * predict on the backend chosen by GQA_BACKEND; the file is checked with the `onnx` package's
 * `onnx.checker.check_model(full_check=True)` through the project's Python (.venv), skipped with
 * the reason when that Python lacks `onnx`.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import * as ortNode from "onnxruntime-node";
import * as ortWeb from "onnxruntime-web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { GQA, type BuildOptions, type Model } from "gqa";
import { expectCode } from "./helpers/expect.js";
import { findPython, REPO_ROOT } from "./helpers/python.js";
import { mulberry32 } from "./helpers/random.js";

const TOL = 1e-5;

interface Case {
  name: string;
  options: BuildOptions;
  /** [batch, seq] shapes run through the same file (dynamic axes). */
  shapes: [number, number][];
  /** Whether rows get lengths < seq (padding with garbage after them). */
  padded: boolean;
}

const BASE = { embedDim: 5, hiddenSize: 32, numLayers: 2, dropout: 0, seed: 7 } satisfies BuildOptions;

const CASES: Case[] = [
  { name: "rope, GQA 8/2 heads, last_timestep, padded", options: { ...BASE, numHeads: 8, numKvHeads: 2, rope: true }, shapes: [[3, 9], [1, 4]], padded: true },
  { name: "Edifice yarn, 4/2 heads, mean_pool, padded", options: { ...BASE, numHeads: 4, numKvHeads: 2, yarn: true, yarnScale: 4, yarnOriginalMaxPosition: 8, outputMode: "mean_pool" }, shapes: [[2, 12], [4, 3]], padded: true },
  { name: "no rotary, MHA 4/4, all positions, unpadded", options: { ...BASE, numHeads: 4, numKvHeads: 4, outputMode: "all" }, shapes: [[2, 7]], padded: false },
  { name: "HF dynamic rope (seq past the original length), 8/2, all, padded", options: { ...BASE, numHeads: 8, numKvHeads: 2, ropeScaling: { type: "dynamic", factor: 2, originalMaxPositionEmbeddings: 6 }, outputMode: "all" }, shapes: [[2, 10], [2, 4]], padded: true },
  { name: "HF llama3 rope, headDim 6, classification head (3 classes), padded", options: { ...BASE, numHeads: 4, numKvHeads: 2, headDim: 6, ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 4 }, head: { type: "classification", numClasses: 3 } }, shapes: [[3, 8]], padded: true },
  { name: "sliding window 3, rope, GQA 8/2, all positions, padded", options: { ...BASE, numHeads: 8, numKvHeads: 2, rope: true, slidingWindow: 3, outputMode: "all" }, shapes: [[3, 11], [1, 2]], padded: true },
  { name: "rope, MQA 4/1, mean_pool, regression head (2 outputs), padded", options: { ...BASE, numHeads: 4, numKvHeads: 1, rope: true, outputMode: "mean_pool", head: { type: "regression", outDim: 2 } }, shapes: [[3, 6], [1, 2]], padded: true },
];

/** Deterministic inputs in [-1, 1] (mulberry32), garbage (1e6, NaN) after each row's length. */
function inputs(b: number, t: number, e: number, padded: boolean, seed: number): { x: Float32Array; lengths: number[] } {
  const rand = mulberry32(seed);
  const lengths = Array.from({ length: b }, (_, i) => (padded ? Math.max(1, t - ((i * 3 + 1) % t)) : t));
  if (padded && b > 1) lengths[0] = t;
  const x = new Float32Array(b * t * e);
  for (let i = 0; i < b; i++)
    for (let j = 0; j < t; j++)
      for (let k = 0; k < e; k++) x[(i * t + j) * e + k] = j < lengths[i]! ? rand() * 2 - 1 : k % 2 ? Number.NaN : 1e6;
  return { x, lengths };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    m = Number.isNaN(d) ? Infinity : Math.max(m, d);
  }
  return m;
}

type Ort = typeof ortNode;
const RUNTIMES: [string, Ort][] = [
  ["onnxruntime-node", ortNode],
  ["onnxruntime-web", ortWeb as unknown as Ort],
];

const python = findPython(["onnx"]);
const dir = mkdtempSync(join(tmpdir(), "gqa-onnx-"));

describe("ONNX export", () => {
  beforeAll(async () => {
    await GQA.init();
    ortWeb.env.wasm.numThreads = 1;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const c of CASES) {
    describe(c.name, () => {
      let model: Model;
      let bytes: Uint8Array;
      beforeAll(async () => {
        model = await GQA.build(c.options);
        bytes = model.exportOnnx();
      });
      afterAll(() => model.dispose());

      for (const [rt, ort] of RUNTIMES) {
        it(`${rt} matches gqa's forward within ${TOL}`, async () => {
          const session = await ort.InferenceSession.create(bytes);
          expect(session.inputNames).toEqual(["input", "lengths"]);
          const head = c.options.head?.type;
          expect(session.outputNames).toEqual(head === "classification" ? ["output", "probabilities"] : head === "regression" ? ["output", "values"] : ["output"]);
          const e = c.options.embedDim;
          for (const [si, [b, t]] of c.shapes.entries()) {
            const { x, lengths } = inputs(b, t, e, c.padded, 1000 + si);
            const feeds = {
              input: new ort.Tensor("float32", x, [b, t, e]),
              lengths: new ort.Tensor("int64", BigInt64Array.from(lengths, (l) => BigInt(l)), [b]),
            };
            const out = await session.run(feeds);
            const want = model.forwardSync(x, [b, t, e], { lengths });
            expect(out.output!.dims).toEqual(want.dims);
            const d = maxAbsDiff(out.output!.data as Float32Array, want.data);
            console.log(`${c.name} | ${rt} | [${b}, ${t}] lengths ${lengths.join(",")} | output max |diff| ${d.toExponential(2)}`);
            expect(d, `output [${b}, ${t}] max |diff| ${d}`).toBeLessThan(TOL);
            if (head) {
              const p = await model.predict(x, [b, t, e], { lengths });
              const name = head === "classification" ? "probabilities" : "values";
              expect(out[name]!.dims).toEqual(p.dims);
              const dp = maxAbsDiff(out[name]!.data as Float32Array, p.data);
              console.log(`${c.name} | ${rt} | [${b}, ${t}] | ${name} max |diff| ${dp.toExponential(2)}`);
              expect(dp, `${name} [${b}, ${t}] max |diff| ${dp}`).toBeLessThan(TOL);
            }
          }
          await session.release();
        });
      }

      it.skipIf(!python.ok)(`onnx.checker.check_model(full_check=True) accepts it${python.ok ? "" : ` (skipped: ${python.reason})`}`, () => {
        if (!python.ok) return;
        const file = join(dir, `${c.name.replace(/\W+/g, "_")}.onnx`);
        writeFileSync(file, bytes);
        const code = [
          "import json, sys, onnx",
          "m = onnx.load(sys.argv[1])",
          "onnx.checker.check_model(m, full_check=True)",
          "print(json.dumps({'opset': [o.version for o in m.opset_import if o.domain in ('', 'ai.onnx')], 'meta': {p.key: p.value for p in m.metadata_props}}))",
        ].join("\n");
        const r = spawnSync(python.python, ["-c", code, file], { encoding: "utf8", timeout: 120_000 });
        expect(r.status, r.stderr).toBe(0);
        const info = JSON.parse(r.stdout.trim().split("\n").pop()!) as { opset: number[]; meta: Record<string, string> };
        expect(info.opset[0]).toBeGreaterThanOrEqual(17);
        expect(JSON.parse(info.meta["gqa_config"]!)).toEqual(model.config);
      });
    });
  }

  it("refuses unknown export options with INVALID_OPTION naming the option", async () => {
    const m = await GQA.build({ ...BASE, numHeads: 4, numKvHeads: 2 });
    try {
      await expectCode(() => m.exportOnnx({ externalData: true } as never), "INVALID_OPTION", /externalData/);
    } finally {
      m.dispose();
    }
    await expectCode(() => m.exportOnnx(), "DISPOSED");
  });

  it("gqa export --model <file> --onnx <out> writes the same graph as model.exportOnnx()", async () => {
    const cli = join(REPO_ROOT, "dist", "cli", "index.js");
    if (!existsSync(join(REPO_ROOT, "dist", "cli", "export.js"))) {
      const r = spawnSync(join(REPO_ROOT, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: REPO_ROOT, encoding: "utf8" });
      expect(existsSync(cli), `could not build ${cli}: ${r.stdout}${r.stderr}`).toBe(true);
    }
    const m = await GQA.build({ ...BASE, numHeads: 4, numKvHeads: 2, rope: true, head: { type: "classification", numClasses: 2 } });
    try {
      const file = join(dir, "cli.safetensors");
      const out = join(dir, "cli.onnx");
      await m.saveFile(file);
      const r = spawnSync(process.execPath, [cli, "export", "--model", file, "--onnx", out], { encoding: "utf8", timeout: 300_000 });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/wrote .*cli\.onnx/);
      expect(Buffer.compare(readFileSync(out), Buffer.from(m.exportOnnx()))).toBe(0);
      const bad = spawnSync(process.execPath, [cli, "export", "--model", join(dir, "missing.safetensors"), "--onnx", out], { encoding: "utf8", timeout: 300_000 });
      expect(bad.status).toBe(2);
    } finally {
      m.dispose();
    }
  });
});
