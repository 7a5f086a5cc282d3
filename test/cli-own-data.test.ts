// `gqa train` on the user's own files: CSV and .npy data written here, classification
// and regression; the metrics train reports are checked against values computed here from the
// saved model's predictions (`gqa predict`), and every bad input names the file and the place.
// Runs the built CLI (dist/cli/index.js) on the backend named by GQA_BACKEND.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { mulberry32 } from "./helpers/random.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const cli = join(root, "dist", "cli", "index.js");
const tmp = mkdtempSync(join(tmpdir(), "gqa-own-data-"));
const at = (name: string) => join(tmp, name);

function gqa(...args: string[]) {
  if (!existsSync(cli)) throw new Error(`${cli} missing: run npx tsc -p tsconfig.build.json`);
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", cwd: root, env: { ...process.env }, timeout: 600_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A float32 C-order `.npy` (NEP 1, version 1.0). */
function npy(shape: number[], values: ArrayLike<number>): Buffer {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  while ((10 + header.length + 1) % 64 !== 0) header += " ";
  header += "\n";
  const out = Buffer.alloc(10 + header.length + 4 * values.length);
  out.write("\x93NUMPY", 0, "latin1");
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, "latin1");
  for (let i = 0; i < values.length; i++) out.writeFloatLE(values[i]!, 10 + header.length + 4 * i);
  return out;
}

/** Seeded uniform [0, 1) (mulberry32, test/helpers/random.ts). */
const rng = mulberry32;

const T = 8, C = 2;
/**
 * `n` cases of `T x C`: classification case `i` has class `i % 3` (a ramp whose slope depends on
 * the class, plus noise); its regression target is the mean of channel 0 times 2, plus 1.
 */
function makeData(n: number, seed: number) {
  const r = rng(seed);
  const series: number[][][] = [];
  const classes: string[] = [];
  const targets: number[] = [];
  for (let i = 0; i < n; i++) {
    const k = i % 3;
    const a = r() * 2 - 1;
    const rows = Array.from({ length: T }, (_, t) => [(k - 1) * 0.8 * t + 0.5 * a + 0.1 * r(), r()]);
    series.push(rows);
    classes.push(["low", "mid", "high"][k]!);
    targets.push(2 * (rows.reduce((s, row) => s + row[0]!, 0) / T) + 1);
  }
  return { series, classes, targets };
}

function writeCsv(file: string, d: ReturnType<typeof makeData>, regression: boolean) {
  const lines = [regression ? "id,x0,x1,y" : "id,label,x0,x1"];
  d.series.forEach((rows, i) => {
    for (const row of rows) lines.push(regression ? `c${i},${row[0]},${row[1]},${d.targets[i]}` : `c${i},${d.classes[i]},${row[0]},${row[1]}`);
  });
  writeFileSync(file, lines.join("\n") + "\n");
}
const writeNpy = (file: string, d: ReturnType<typeof makeData>) => writeFileSync(file, npy([d.series.length, T, C], d.series.flat(2)));

const train = makeData(60, 1);
const test = makeData(30, 2);
const small = ["--hidden-size", "16", "--num-heads", "2", "--num-kv-heads", "1", "--num-layers", "1", "--epochs", "20", "--batch-size", "8", "--no-progress"];

writeCsv(at("train.csv"), train, false);
writeCsv(at("test.csv"), test, false);
writeCsv(at("train-reg.csv"), train, true);
writeCsv(at("test-reg.csv"), test, true);
writeNpy(at("train.npy"), train);
writeNpy(at("test.npy"), test);
writeFileSync(at("train-labels.txt"), train.classes.join("\n") + "\n");
writeFileSync(at("test-labels.txt"), test.classes.join("\n") + "\n");
writeFileSync(at("train-targets.npy"), npy([train.targets.length], train.targets));
writeFileSync(at("test-targets.npy"), npy([test.targets.length], test.targets));

/** Accuracy of `gqa predict` on test.npy against the true classes, computed here. */
function predictedAccuracy(model: string): { accuracy: number; labels: string[] } {
  const p = gqa("predict", "--model", model, "--input", at("test.npy"));
  expect(p.code, p.stderr).toBe(0);
  const labels = (JSON.parse(p.stdout).predictions as { label: string }[]).map((q) => q.label);
  return { accuracy: labels.filter((l, i) => l === test.classes[i]).length / test.classes.length, labels };
}

/**
 * RMSE and MAE of `gqa predict` on test.npy against the true targets (as the CLI read them:
 * float32 for `.npy` targets), computed here.
 */
function predictedErrors(model: string, float32Targets = false): { rmse: number; mae: number } {
  const p = gqa("predict", "--model", model, "--input", at("test.npy"));
  expect(p.code, p.stderr).toBe(0);
  const j = JSON.parse(p.stdout);
  expect(j.targets.length).toBe(1);
  const y = (j.predictions as { values: Record<string, number> }[]).map((q) => q.values[j.targets[0]]!);
  expect(y.length).toBe(test.targets.length);
  const d = y.map((v, i) => v - (float32Targets ? Math.fround(test.targets[i]!) : test.targets[i]!));
  return { rmse: Math.sqrt(d.reduce((a, b) => a + b * b, 0) / d.length), mae: d.reduce((a, b) => a + Math.abs(b), 0) / d.length };
}

describe("gqa train on the user's own data", () => {
  it("CSV classification: test accuracy equals the predictions' accuracy; --val-split per epoch", () => {
    const out = at("csv-cls");
    const r = gqa("train", "--data", at("train.csv"), "--test-data", at("test.csv"), "--val-split", "0.2", ...small, "--out", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/data: train: 60 train \/ 30 test cases, 2 channels, 3 classes, T <= 8 \(both splits\)/);
    // 3 classes x 20 cases, round(0.2 * 20) = 4 each.
    expect(r.stderr).toMatch(/validation: 12 of the 60 training cases held out \(--val-split 0.2\); training on 48/);
    expect(r.stderr).toMatch(/^epoch 20\/20: loss [\d.]+, acc [\d.]+, val acc [\d.]+, /m);
    const m = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
    expect(m.classLabels).toEqual(["high", "low", "mid"]);
    expect(m.history.length).toBe(20);
    for (const h of m.history) expect(h.valAccuracy * 12).toBeCloseTo(Math.round(h.valAccuracy * 12), 9);
    const { accuracy } = predictedAccuracy(join(out, "model.safetensors"));
    expect(m.test.accuracy).toBe(accuracy);
    expect(m.test.count).toBe(30);
    // The data is easy: well above chance (1/3).
    expect(accuracy).toBeGreaterThan(0.8);
    expect(r.stdout).toContain(`test accuracy: ${(100 * accuracy).toFixed(2)}% (${Math.round(accuracy * 30)}/30)`);
    const svg = readFileSync(join(out, "training-curve.svg"), "utf8");
    expect(svg).toContain("val accuracy");
  });

  it(".npy classification with a text labels file: the same check", () => {
    const out = at("npy-cls");
    const r = gqa("train", "--data", at("train.npy"), "--labels", at("train-labels.txt"), "--test-data", at("test.npy"), "--test-labels", at("test-labels.txt"), ...small, "--out", out);
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
    expect(m.test.accuracy).toBe(predictedAccuracy(join(out, "model.safetensors")).accuracy);
    // Same data and seed as the CSV run without a hold-out: the confusion matrix sums to 30.
    expect(m.test.confusion.flat().reduce((a: number, b: number) => a + b, 0)).toBe(30);
  });

  it("CSV regression (MSE): RMSE and MAE equal those of the predictions", () => {
    const out = at("csv-reg");
    const r = gqa("train", "--task", "regression", "--data", at("train-reg.csv"), "--label-column", "y", "--test-data", at("test-reg.csv"), "--val-split", "0.25", ...small, "--epochs", "40", "--out", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/1 target \(regression\)/);
    expect(r.stderr).toMatch(/^epoch 40\/40: loss [\d.]+, val loss [\d.]+, /m);
    const m = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
    expect(m.head).toEqual({ type: "regression", outDim: 1, loss: "mse" });
    expect(m.targetNames).toEqual(["y"]);
    expect(m.training).toMatchObject({ trainCount: 45, valCount: 15 });
    const e = predictedErrors(join(out, "model.safetensors"));
    expect(m.test.rmse).toBeCloseTo(e.rmse, 9);
    expect(m.test.mae).toBeCloseTo(e.mae, 9);
    // Better than predicting the mean target (its RMSE is the targets' std).
    const mean = test.targets.reduce((a, b) => a + b, 0) / test.targets.length;
    const sd = Math.sqrt(test.targets.reduce((a, b) => a + (b - mean) ** 2, 0) / test.targets.length);
    expect(e.rmse).toBeLessThan(0.5 * sd);
    expect(r.stdout).toMatch(/^test RMSE [\d.e-]+, MAE [\d.e-]+ \(30 cases\)$/m);
    expect(readFileSync(join(out, "training-curve.svg"), "utf8")).toContain("val loss");
  });

  it(".npy regression (Huber) with .npy targets: the same check", () => {
    const out = at("npy-reg");
    const r = gqa("train", "--task", "regression", "--loss", "huber", "--huber-delta", "0.5", "--data", at("train.npy"), "--labels", at("train-targets.npy"), "--test-data", at("test.npy"), "--test-labels", at("test-targets.npy"), ...small, "--epochs", "40", "--out", out);
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
    expect(m.head).toEqual({ type: "regression", outDim: 1, loss: "huber", huberDelta: 0.5 });
    const e = predictedErrors(join(out, "model.safetensors"), true);
    expect(m.test.rmse).toBeCloseTo(e.rmse, 9);
    expect(m.test.mae).toBeCloseTo(e.mae, 9);
  });

  it("a single UEA .ts file with --test-data; a *_TEST.ts alone still means the dataset pair", () => {
    const dir = join(root, "data", "BasicMotions");
    const r = gqa("train", "--data", join(dir, "BasicMotions_TEST.ts"), "--test-data", join(dir, "BasicMotions_TRAIN.ts"), ...small, "--epochs", "1", "--out", at("ts-own"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/data: BasicMotions_TEST: 40 train \/ 40 test cases, 6 channels, 4 classes, T <= 100/);
    expect(JSON.parse(readFileSync(join(at("ts-own"), "metrics.json"), "utf8")).files).toEqual({ train: join(dir, "BasicMotions_TEST.ts"), test: join(dir, "BasicMotions_TRAIN.ts") });
    const pair = gqa("train", "--data", join(dir, "BasicMotions_TEST.ts"), ...small, "--epochs", "1", "--out", at("ts-pair"));
    expect(pair.code, pair.stderr).toBe(0);
    expect(pair.stderr).toMatch(/data: BasicMotions: 40 train \/ 40 test cases/);
  });

  it("--ensemble 2: one file; its probabilities are the mean of the two members trained alone", () => {
    const probs = (model: string) => {
      const p = gqa("predict", "--model", model, "--input", at("test.npy"));
      expect(p.code, p.stderr).toBe(0);
      return (JSON.parse(p.stdout).predictions as { probabilities: Record<string, number> }[]).map((q) => q.probabilities);
    };
    const args = ["--data", at("train.csv"), "--test-data", at("test.csv"), ...small, "--epochs", "5"];
    const r = gqa("train", ...args, "--ensemble", "2", "--seed", "1", "--out", at("ens"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/parameters \(with head\) per member; an ensemble of 2 \(seeds 2-3\), outputs averaged/);
    expect(r.stderr).toMatch(/^member 2\/2 epoch 5\/5: /m);
    const m = JSON.parse(readFileSync(join(at("ens"), "metrics.json"), "utf8"));
    expect(m.training.memberSeeds).toEqual([2, 3]);
    // Members trained alone with seeds 2 and 3 (one model: seed * 1 + 0).
    for (const seed of [2, 3]) expect(gqa("train", ...args, "--seed", String(seed), "--out", at(`ens-${seed}`)).code).toBe(0);
    const [e, a, b] = [probs(join(at("ens"), "model.safetensors")), probs(join(at("ens-2"), "model.safetensors")), probs(join(at("ens-3"), "model.safetensors"))];
    let maxDiff = 0;
    e.forEach((row, i) => {
      for (const k of Object.keys(row)) maxDiff = Math.max(maxDiff, Math.abs(row[k]! - (a[i]![k]! + b[i]![k]!) / 2));
    });
    expect(maxDiff).toBeLessThan(1e-6);
    // eval-style check: the reported test accuracy is the accuracy of the averaged probabilities.
    expect(m.test.accuracy).toBe(predictedAccuracy(join(at("ens"), "model.safetensors")).accuracy);
  });

  it("bad inputs exit 2 and name the file and the place", () => {
    const run = (...a: string[]) => gqa("train", ...a, ...small, "--epochs", "1", "--out", at("bad"));
    const expectError = (r: ReturnType<typeof gqa>, re: RegExp) => {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(re);
    };
    const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    // Missing label column: the header line.
    const noLabel = at("no-label.csv");
    writeFileSync(noLabel, "id,x0,x1\na,1,2\n");
    expectError(run("--data", noLabel), new RegExp(`error: ${esc(noLabel)}:1: no label column 'label' in the header \\(columns: id, x0, x1\\)`));
    // Ragged row: its line.
    const ragged = at("ragged.csv");
    writeFileSync(ragged, "id,label,x0,x1\na,u,1,2\na,u,1\nb,v,1,2\n");
    expectError(run("--data", ragged), new RegExp(`error: ${esc(ragged)}:3: ragged row: expected 4 fields \\(as the header on line 1\\), found 3`));
    // NaN in CSV: line and column.
    const nan = at("nan.csv");
    writeFileSync(nan, "id,label,x0,x1\na,u,1,2\nb,v,NaN,2\n");
    expectError(run("--data", nan), new RegExp(`error: ${esc(nan)}:3: column 'x0': 'NaN' is not a finite number`));
    // NaN in .npy: the element's index.
    const vals = train.series.flat(2);
    vals[2 * T * C + 3 * C + 1] = NaN;
    writeFileSync(at("nan.npy"), npy([60, T, C], vals));
    expectError(run("--data", at("nan.npy"), "--labels", at("train-labels.txt")), new RegExp(`error: ${esc(at("nan.npy"))}: non-finite .* at index \\[2, 3, 1\\]`));
    // Label file length mismatch: the labels file, its last line, both counts.
    writeFileSync(at("short-labels.txt"), train.classes.slice(0, 59).join("\n") + "\n");
    expectError(
      run("--data", at("train.npy"), "--labels", at("short-labels.txt")),
      new RegExp(`error: ${esc(at("short-labels.txt"))}:59: 59 labels, but ${esc(at("train.npy"))} has 60 cases`),
    );
    writeFileSync(at("short-targets.npy"), npy([59], train.targets.slice(0, 59)));
    expectError(
      run("--task", "regression", "--data", at("train.npy"), "--labels", at("short-targets.npy")),
      new RegExp(`error: ${esc(at("short-targets.npy"))}: 59 labels, but ${esc(at("train.npy"))} has 60 cases`),
    );
    // .npy without labels; a label changing within a case; a non-numeric regression target.
    expectError(run("--data", at("train.npy")), new RegExp(`error: ${esc(at("train.npy"))}: .npy data needs a labels file`));
    const mixed = at("mixed.csv");
    writeFileSync(mixed, "id,label,x0\na,u,1\na,v,2\n");
    expectError(run("--data", mixed), new RegExp(`error: ${esc(mixed)}:3: label 'v' differs from 'u' on line 2`));
    const word = at("word.csv");
    writeFileSync(word, "id,y,x0\na,high,1\n");
    expectError(run("--task", "regression", "--label-column", "y", "--data", word), new RegExp(`error: ${esc(word)}:2: label column 'y': 'high' is not a finite number`));
    // A test class the training data lacks: the test file and the case.
    const other = at("other.csv");
    writeFileSync(other, "id,label,x0,x1\nz,unseen,1,2\n");
    expectError(run("--data", at("train.csv"), "--test-data", other), new RegExp(`error: ${esc(other)}: line 2: class 'unseen' does not occur in the training data`));
  });
});

describe("gqa eval and gqa predict on the user's own files", () => {
  const cls = join(at("own-cls"), "model.safetensors");
  const reg = join(at("own-reg"), "model.safetensors");
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  beforeAll(() => {
    const a = gqa("train", "--data", at("train.csv"), "--test-data", at("test.csv"), ...small, "--out", at("own-cls"));
    expect(a.code, a.stderr).toBe(0);
    const b = gqa("train", "--task", "regression", "--data", at("train-reg.csv"), "--label-column", "y", "--test-data", at("test-reg.csv"), ...small, "--out", at("own-reg"));
    expect(b.code, b.stderr).toBe(0);
  }, 600_000);

  /** The `predictions` of `gqa predict` (JSON). */
  const predictions = (model: string, ...args: string[]) => {
    const p = gqa("predict", "--model", model, ...args);
    expect(p.code, p.stderr).toBe(0);
    return JSON.parse(p.stdout).predictions as { index: number; id?: string; length: number; label?: string; probabilities?: Record<string, number>; values?: Record<string, number> }[];
  };

  it("eval on a CSV and on .npy with a labels file: the test metrics train reported, and the predictions' accuracy", () => {
    const m = JSON.parse(readFileSync(join(at("own-cls"), "metrics.json"), "utf8"));
    const csv = gqa("eval", "--model", cls, "--data", at("test.csv"), "--json");
    expect(csv.code, csv.stderr).toBe(0);
    const e = JSON.parse(csv.stdout);
    expect(e.count).toBe(30);
    expect(e.accuracy).toBe(m.test.accuracy);
    expect(e.confusion).toEqual(m.test.confusion);
    expect(e.classLabels).toEqual(["high", "low", "mid"]);
    // Independently: the share of predict's labels that equal the true classes.
    expect(e.accuracy).toBe(predictedAccuracy(cls).accuracy);
    const npy = gqa("eval", "--model", cls, "--data", at("test.npy"), "--labels", at("test-labels.txt"), "--json");
    expect(npy.code, npy.stderr).toBe(0);
    expect(JSON.parse(npy.stdout)).toMatchObject({ accuracy: m.test.accuracy, confusion: m.test.confusion, count: 30 });
    const text = gqa("eval", "--model", cls, "--data", at("test.csv"));
    expect(text.stdout).toContain("test.csv (30 cases)");
    expect(text.stdout).toContain(`accuracy: ${(100 * m.test.accuracy).toFixed(2)}% (${Math.round(m.test.accuracy * 30)}/30)`);
    expect(text.stdout).toContain("confusion matrix");
  });

  it("eval of a regression model on CSV and on .npy with targets: RMSE and MAE of the predictions", () => {
    const m = JSON.parse(readFileSync(join(at("own-reg"), "metrics.json"), "utf8"));
    const csv = gqa("eval", "--model", reg, "--data", at("test-reg.csv"), "--label-column", "y", "--json");
    expect(csv.code, csv.stderr).toBe(0);
    const e = JSON.parse(csv.stdout);
    expect(e.count).toBe(30);
    expect(e.rmse).toBeCloseTo(m.test.rmse, 9);
    expect(e.mae).toBeCloseTo(m.test.mae, 9);
    const errs = predictedErrors(reg, true);
    const npy = JSON.parse(gqa("eval", "--model", reg, "--data", at("test.npy"), "--labels", at("test-targets.npy"), "--json").stdout);
    expect(npy.rmse).toBeCloseTo(errs.rmse, 9);
    expect(npy.mae).toBeCloseTo(errs.mae, 9);
    expect(gqa("eval", "--model", reg, "--data", at("test-reg.csv"), "--label-column", "y").stdout).toMatch(/^test-reg\.csv \(30 cases\)\nRMSE [\d.e-]+, MAE [\d.e-]+$/m);
  });

  it("predict on a CSV of many cases: one prediction per case with its id, labels optional, as for the same cases in .npy", () => {
    const fromNpy = predictions(cls, "--input", at("test.npy"));
    const fromCsv = predictions(cls, "--input", at("test.csv"));
    expect(fromCsv.length).toBe(30);
    expect(fromCsv.map((p) => p.id)).toEqual(test.classes.map((_, i) => `c${i}`));
    expect(fromCsv.map((p) => p.length)).toEqual(new Array(30).fill(T));
    // The same float32 values in both files: the same probabilities, bit for bit.
    expect(fromCsv.map((p) => p.probabilities)).toEqual(fromNpy.map((p) => p.probabilities));
    // Without the label column.
    const unlabelled = at("test-unlabelled.csv");
    writeFileSync(unlabelled, readFileSync(at("test.csv"), "utf8").split("\n").map((l) => l.split(",").filter((_, j) => j !== 1).join(",")).join("\n"));
    expect(predictions(cls, "--input", unlabelled).map((p) => [p.id, p.label])).toEqual(fromCsv.map((p) => [p.id, p.label]));
    // CSV output: an id column after the index.
    const c = gqa("predict", "--model", cls, "--input", unlabelled, "--format", "csv");
    expect(c.code, c.stderr).toBe(0);
    const lines = c.stdout.trim().split("\n");
    expect(lines[0]).toBe("index,id,length,label,p_high,p_low,p_mid");
    expect(lines.length).toBe(31);
    expect(lines[1]!.split(",").slice(0, 4)).toEqual(["0", "c0", String(T), fromCsv[0]!.label]);
    // Regression: the target column named as for train is left out of the channels.
    const r = predictions(reg, "--input", at("test-reg.csv"), "--label-column", "y");
    expect(r.map((p) => p.id)).toEqual(fromCsv.map((p) => p.id));
    expect(r.map((p) => p.values)).toEqual(predictions(reg, "--input", at("test.npy")).map((p) => p.values));
  });

  it("eval refuses a class the model does not know and a wrong channel count, naming the file", () => {
    const other = at("eval-other.csv");
    writeFileSync(other, "id,label,x0,x1\na,low,1,2\nb,sideways,1,2\n");
    const a = gqa("eval", "--model", cls, "--data", other);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(new RegExp(`error: ${esc(other)}: line 3: class 'sideways' is not one of the model's classes \\(high, low, mid\\)`));
    const wide = at("eval-wide.csv");
    writeFileSync(wide, "id,label,x0,x1,x2\na,low,1,2,3\n");
    const b = gqa("eval", "--model", cls, "--data", wide);
    expect(b.code).toBe(2);
    expect(b.stderr).toContain(`error: ${wide}:1: the model expects 2 channels, the data has 3`);
    const c = gqa("predict", "--model", cls, "--input", wide);
    expect(c.code).toBe(2);
    expect(c.stderr).toContain(`error: ${wide}:1: expected 2 channels (the model's), found 3 columns`);
  });
});
