// `gqa train --recipe auto` end to end on a small synthetic dataset written here (the built CLI,
// dist/cli/index.js, as a child process): the search never reads the test split, and the input
// transform recorded in the model file is applied by eval, predict, the TypeScript API and the
// exported ONNX graph alike.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GQA } from "gqa";
import * as ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import { padBatch } from "../ts/data/batch.js";
import { channelStats } from "../ts/data/standardize.js";
import { modelInputs, withCliMetadata, type CliMetadata } from "../ts/model-file.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const cli = join(root, "dist", "cli", "index.js");
const tmp = mkdtempSync(join(tmpdir(), "gqa-recipe-test-"));

function gqa(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", cwd: root, env: { ...process.env }, timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Synthetic 2-class cases of 14-20 steps: a sine of 2 (class 0) or 4 (class 1) periods plus seeded noise. */
function cases(n: number, seed: number): { series: Float32Array[]; labels: number[] } {
  let s = seed >>> 0;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const labels = Array.from({ length: n }, (_, i) => i % 2);
  const series = labels.map((y) => {
    const T = 14 + Math.floor(rand() * 7);
    return Float32Array.from({ length: T }, (_, t) => 3 + Math.sin((2 * Math.PI * (y ? 4 : 2) * t) / T) + 0.3 * (rand() - 0.5));
  });
  return { series, labels };
}

/** A univariate UEA .ts file of `series` with class names "0"/"1" (`flip`: every label swapped). */
function tsFile(series: Float32Array[], labels: number[], flip = false): string {
  const head = ["@problemName Syn", "@timeStamps false", "@missing false", "@univariate true", "@equalLength false", "@classLabel true 0 1", "@data"];
  return [...head, ...series.map((x, i) => `${Array.from(x, (v) => v.toFixed(5)).join(",")}:${flip ? 1 - labels[i]! : labels[i]!}`)].join("\n") + "\n";
}

const train = cases(16, 1);
const test = cases(12, 2);
/** Writes Syn_TRAIN.ts and Syn_TEST.ts (test labels flipped with `poison`) into a new folder. */
function dataset(name: string, poison: boolean): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "Syn_TRAIN.ts"), tsFile(train.series, train.labels));
  writeFileSync(join(dir, "Syn_TEST.ts"), tsFile(test.series, test.labels, poison));
  return dir;
}

// A fixed search: 2 folds, 3 epochs, 3 candidates, a budget that skips none.
const SEARCH = ["--recipe", "auto", "--folds", "2", "--epochs", "3", "--max-candidates", "3", "--budget", "1000", "--seed", "0", "--no-progress"];

beforeAll(() => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build:ts first`);
});

/** `gqa train` with {@link SEARCH} on the clean or the poisoned copy: its metrics and model bytes. */
function autoRun(name: "clean" | "poisoned") {
  const out = join(tmp, `out-${name}`);
  const r = gqa("train", "--data", dataset(name, name === "poisoned"), ...SEARCH, "--out", out);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/^candidate\s+settings\s+CV accuracy/m);
  expect(r.stdout).toMatch(/^chosen: /m);
  const m = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
  return { m, bytes: readFileSync(join(out, "model.safetensors")) };
}

describe("gqa train --recipe auto", () => {
  // The clean run's out-clean/ is what every test below reads, made once before any of them.
  let cleanRun: ReturnType<typeof autoRun>;
  beforeAll(() => {
    cleanRun = autoRun("clean");
  });

  it("the search never reads the test split: poisoned test labels leave the CV table, choice and model bytes unchanged", () => {
    const runs = [cleanRun, autoRun("poisoned")];
    const table = (m: { recipe: { candidates: { seconds: number }[] } }) => m.recipe.candidates.map(({ seconds: _s, ...c }) => c);
    const [clean, poisoned] = [runs[0]!, runs[1]!];
    expect(clean.m.recipe.candidates.length).toBeGreaterThanOrEqual(3);
    expect(table(poisoned.m)).toEqual(table(clean.m));
    expect(poisoned.m.recipe.chosen).toEqual(clean.m.recipe.chosen);
    expect(Buffer.compare(poisoned.bytes, clean.bytes)).toBe(0);
    // The test split is scored at the end: with every label flipped, the two accuracies add up to 1.
    expect(clean.m.test.accuracy + poisoned.m.test.accuracy).toBeCloseTo(1, 12);
    expect(clean.m.recipe.folds).toBe(2);
    expect(clean.m.training.ensemble).toBe(2);
  });

  it("gqa eval on the auto model reproduces metrics.json's test accuracy", () => {
    const out = join(tmp, "out-clean");
    const m = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
    const e = gqa("eval", "--model", join(out, "model.safetensors"), "--data", join(tmp, "clean"), "--json");
    expect(e.code, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).accuracy).toBe(m.test.accuracy);
  });

  it("the auto model's fold members export to ONNX with the transform; their mean equals gqa predict", async () => {
    const out = join(tmp, "out-clean");
    const model = join(out, "model.safetensors");
    const refused = gqa("export", "--model", model, "--onnx", join(tmp, "ens.onnx"));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/found an ensemble of 2 members \(export each member on its own: --member 0\.\.1\)/);
    const raw = padBatch(test.series, 1);
    const mean = new Float32Array(raw.dims[0] * 2);
    for (const j of [0, 1]) {
      const f = join(tmp, `member-${j}.onnx`);
      const r = gqa("export", "--model", model, "--member", String(j), "--onnx", f);
      expect(r.code, r.stderr).toBe(0);
      const session = await ort.InferenceSession.create(readFileSync(f));
      const res = await session.run({ input: new ort.Tensor("float32", raw.data, raw.dims), lengths: new ort.Tensor("int64", BigInt64Array.from(raw.lengths, (l) => BigInt(l)), [raw.dims[0]]) });
      (res["probabilities"]!.data as Float32Array).forEach((v, i) => {
        mean[i]! += v / 2;
      });
    }
    const p = gqa("predict", "--model", model, "--input", join(tmp, "clean", "Syn_TEST.ts"));
    expect(p.code, p.stderr).toBe(0);
    const rows = JSON.parse(p.stdout).predictions as { probabilities: Record<string, number> }[];
    expect(Math.max(...rows.map((r, i) => Math.abs(r.probabilities["1"]! - mean[2 * i + 1]!)))).toBeLessThan(1e-4);
  });

  it("--recipe auto refuses what it searches: --lr", () => {
    const r = gqa("train", "--data", join(tmp, "clean"), ...SEARCH, "--lr", "0.01", "--out", join(tmp, "bad"));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--recipe auto chooses --lr itself/);
  });
});

describe("a patched, instance-normalised model file", () => {
  it("eval, predict and the API (modelInputs) agree with in-process predictions; ONNX export carries the transform (onnxruntime-node within 1e-4)", async () => {
    const P = 4;
    const stats = channelStats(train.series, 1);
    const meta: CliMetadata = { version: 1, task: "classification", dataset: "Syn", classLabels: ["0", "1"], channels: 1, standardize: stats, transform: { instanceNorm: true, patch: P } };
    const model = await GQA.build({ embedDim: P, hiddenSize: 16, numHeads: 2, numKvHeads: 1, numLayers: 1, outputMode: "mean_pool", seed: 3, head: { type: "classification", numClasses: 2 } });
    const tr = modelInputs(train.series, meta);
    const b = padBatch(tr.series, tr.width);
    await model.fit({ x: b.data, dims: b.dims, lengths: b.lengths, labels: train.labels }, { epochs: 20, batchSize: 8, lr: 1e-2, seed: 0 });
    const file = join(tmp, "patched.safetensors");
    writeFileSync(file, withCliMetadata(await model.save(), meta));
    const te = modelInputs(test.series, meta);
    const tb = padBatch(te.series, te.width);
    const probs = (await model.predict(tb.data, tb.dims, { lengths: tb.lengths })).data;
    model.dispose();
    // Token lengths are ceil(T_i / 4).
    expect(tb.lengths).toEqual(test.series.map((s) => Math.ceil(s.length / P)));
    const pred = test.labels.map((_, i) => (probs[2 * i + 1]! > probs[2 * i]! ? 1 : 0));
    const acc = pred.filter((p, i) => p === test.labels[i]).length / test.labels.length;
    const e = gqa("eval", "--model", file, "--data", dataset("clean", false), "--json");
    expect(e.code, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).accuracy).toBe(acc);
    const p = gqa("predict", "--model", file, "--input", join(tmp, "clean", "Syn_TEST.ts"));
    expect(p.code, p.stderr).toBe(0);
    const rows = JSON.parse(p.stdout).predictions as { probabilities: Record<string, number>; length: number }[];
    expect(rows.map((r) => r.length)).toEqual(test.series.map((s) => s.length));
    const err = Math.max(...rows.map((r, i) => Math.abs(r.probabilities["1"]! - probs[2 * i + 1]!)));
    expect(err).toBeLessThan(1e-6);
    // ONNX: the transform is in the graph, whose input is the raw series [B, S, 1] with raw lengths.
    const onnx = join(tmp, "patched.onnx");
    const x = gqa("export", "--model", file, "--onnx", onnx);
    expect(x.code, x.stderr).toBe(0);
    expect(x.stderr).toMatch(/input: raw series \[batch, steps, 1\], the model file's transform \(standardisation, instance normalisation, patches of 4\) in the graph/);
    const raw = padBatch(test.series, 1);
    // Padded steps hold NaN here: the graph must ignore them, as the TypeScript transform never sees them.
    const xs = Float32Array.from(raw.data, (v, i) => (i % raw.dims[1] < raw.lengths[Math.floor(i / raw.dims[1])]! ? v : Number.NaN));
    const session = await ort.InferenceSession.create(readFileSync(onnx));
    const res = await session.run({ input: new ort.Tensor("float32", xs, raw.dims), lengths: new ort.Tensor("int64", BigInt64Array.from(raw.lengths, (l) => BigInt(l)), [raw.dims[0]]) });
    const op = res["probabilities"]!.data as Float32Array;
    const onnxErr = Math.max(...Array.from(probs, (v, i) => Math.abs(v - op[i]!)));
    expect(onnxErr).toBeLessThan(1e-4);
    const plain = gqa("export", "--model", file, "--onnx", join(tmp, "tokens.onnx"), "--no-transform");
    expect(plain.code, plain.stderr).toBe(0);
    const tokens = await ort.InferenceSession.create(readFileSync(join(tmp, "tokens.onnx")));
    const tr2 = await tokens.run({ input: new ort.Tensor("float32", tb.data, tb.dims), lengths: new ort.Tensor("int64", BigInt64Array.from(tb.lengths, (l) => BigInt(l)), [tb.dims[0]]) });
    expect(Math.max(...Array.from(probs, (v, i) => Math.abs(v - (tr2["probabilities"]!.data as Float32Array)[i]!)))).toBeLessThan(1e-5);
  });
});
