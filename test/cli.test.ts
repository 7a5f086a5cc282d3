// The `gqa` CLI, run as a child process from the built package (dist/cli/index.js), on the backend
// named by GQA_BACKEND (scripts/test.sh runs this suite once per backend).
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GQA } from "gqa";
import { beforeAll, describe, expect, it } from "vitest";
import { readCliMetadata, readMetadata, setMetadata, withCliMetadata, type CliMetadata } from "../ts/model-file.js";
import { trainingCurveSvg } from "../ts/cli/plot.js";
import { classificationMetrics } from "../ts/cli/metrics.js";
import { NO_WASM } from "./helpers/expect.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const cli = join(root, "dist", "cli", "index.js");
const fx = (name: string) => join(root, "test", "fixtures-data", name);
const tmp = mkdtempSync(join(tmpdir(), "gqa-cli-test-"));
const backendEnv = process.env.GQA_BACKEND;

await GQA.init();

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
function gqa(...args: string[]): Run {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", cwd: root, env: { ...process.env }, timeout: 600_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  if (!existsSync(cli)) {
    const r = spawnSync(join(root, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: root, encoding: "utf8" });
    if (!existsSync(cli)) throw new Error(`could not build ${cli}: ${r.stdout}${r.stderr}`);
  }
});

describe("gqa info", () => {
  it("prints the architecture summary and the backend that ran", () => {
    const r = gqa("info", "--embed-dim", "12");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^backend: (native|wasm)/m);
    if (backendEnv === "native" || backendEnv === "wasm") expect(r.stderr).toMatch(new RegExp(`^backend: ${backendEnv}`, "m"));
    expect(r.stdout).toContain("num_kv_heads 2 (group 4), head_dim 32");
    expect(r.stdout).toContain("attn.k_proj.weight");
    expect(r.stdout).toMatch(/\[64, 256\]\s+16,384/);
    expect(r.stdout).not.toContain("MISMATCH");
  });

  it("--json: counts, FLOPs and KV bytes agree with formulas computed here", () => {
    const [E, H, NH, NKV, L, T] = [6, 96, 12, 3, 3, 50];
    const r = gqa("info", "--embed-dim", `${E}`, "--hidden-size", `${H}`, "--num-heads", `${NH}`, "--num-kv-heads", `${NKV}`, "--num-layers", `${L}`, "--seq-len", `${T}`, "--rope", "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    const D = H / NH, qDim = NH * D, kvDim = NKV * D;
    // Edifice's approximate formula (SPEC section 3).
    expect(j.paramCount.approximate).toBe(E * H + L * (2 * H * qDim + 2 * H * kvDim + 8 * H * H));
    // Exact: every weight, bias and LayerNorm parameter, counted by hand from the SPEC layout.
    const perBlock = 2 * H + (qDim * H + qDim) + 2 * (kvDim * H + kvDim) + (H * qDim + H) + 2 * H + (4 * H * H + 4 * H) + (H * 4 * H + H);
    const exact = E * H + H + L * perBlock + 2 * H;
    expect(j.paramCount.exact).toBe(exact);
    expect(j.paramCount.table).toBe(exact);
    expect(j.params.length).toBe(2 + 16 * L + 2);
    expect(j.params.find((p: { name: string }) => p.name === "blocks.2.attn.v_proj.weight").shape).toEqual([kvDim, H]);
    // FLOPs per token = 2 * matmul weights + L * 4 * T * H.
    const matmulWeights = E * H + L * (qDim * H + 2 * kvDim * H + H * qDim + 8 * H * H);
    expect(j.flopsPerToken.total).toBe(2 * matmulWeights + L * 4 * T * H);
    expect(j.flopsPerToken.seqLen).toBe(T);
    // KV cache: 2 * L * NKV * D * 4 bytes; MHA twin NKV = NH, MQA twin NKV = 1.
    expect(j.kvCacheBytesPerToken).toEqual({ model: 2 * L * NKV * D * 4, core: 2 * L * NKV * D * 4, mha: 2 * L * NH * D * 4, mqa: 2 * L * 1 * D * 4 });
    expect(j.config.rotary).toBe("rope");
    expect(j.config.group).toBe(4);
  });

  it("--seq-len-hint sets the default --seq-len; --window-size, its deprecated spelling, still works with a warning", () => {
    const hint = gqa("info", "--embed-dim", "6", "--seq-len-hint", "40", "--json");
    expect(hint.code).toBe(0);
    expect(JSON.parse(hint.stdout).flopsPerToken.seqLen).toBe(40);
    expect(hint.stderr).not.toContain("deprecated");
    const old = gqa("info", "--embed-dim", "6", "--window-size", "40", "--json");
    expect(old.code).toBe(0);
    expect(JSON.parse(old.stdout).flopsPerToken.seqLen).toBe(40);
    expect(old.stderr).toContain("warning: --window-size is deprecated: use --seq-len-hint");
    const help = gqa("info", "--help");
    expect(help.stdout).toContain("--seq-len-hint <n>");
    expect(help.stdout).not.toContain("--window-size");
  });

  it("--head-dim and --rope-scaling: shapes, counts, FLOPs and KV bytes follow headDim", () => {
    const [E, H, NH, NKV, D, L, T] = [6, 30, 4, 2, 12, 2, 20];
    const r = gqa("info", "--embed-dim", `${E}`, "--hidden-size", `${H}`, "--num-heads", `${NH}`, "--num-kv-heads", `${NKV}`, "--head-dim", `${D}`,
      "--num-layers", `${L}`, "--seq-len", `${T}`, "--rope-theta", "500000", "--rope-scaling", '{"type":"linear","factor":4}', "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    const qDim = NH * D, kvDim = NKV * D;
    expect(j.params.find((p: { name: string }) => p.name === "blocks.0.attn.q_proj.weight").shape).toEqual([qDim, H]);
    expect(j.params.find((p: { name: string }) => p.name === "blocks.1.attn.out_proj.weight").shape).toEqual([H, qDim]);
    expect(j.paramCount.approximate).toBe(E * H + L * (2 * H * qDim + 2 * H * kvDim + 8 * H * H));
    const perBlock = 2 * H + (qDim * H + qDim) + 2 * (kvDim * H + kvDim) + (H * qDim + H) + 2 * H + (4 * H * H + 4 * H) + (H * 4 * H + H);
    expect(j.paramCount.exact).toBe(E * H + H + L * perBlock + 2 * H);
    expect(j.paramCount.table).toBe(j.paramCount.exact);
    const matmulWeights = E * H + L * (qDim * H + 2 * kvDim * H + H * qDim + 8 * H * H);
    expect(j.flopsPerToken.total).toBe(2 * matmulWeights + L * 4 * T * qDim);
    expect(j.kvCacheBytesPerToken.model).toBe(2 * L * NKV * D * 4);
    expect(j.kvCacheBytesPerToken.core).toBe(2 * L * NKV * D * 4);
    expect(j.config.headDim).toBe(D);
    expect(j.config.rotary).toBe("linear (Hugging Face), theta 500000");
    const bad = gqa("info", "--embed-dim", "6", "--rope-scaling", '{"type":"linear","factor":0}');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/ropeScaling\.factor/);
  });

  it("no input projection when embed-dim equals hidden-size", () => {
    const j = JSON.parse(gqa("info", "--embed-dim", "64", "--hidden-size", "64", "--num-heads", "4", "--json").stdout);
    expect(j.params.some((p: { name: string }) => p.name.startsWith("input_projection"))).toBe(false);
    expect(j.paramCount.exact).toBe(j.paramCount.table);
  });

  it("--model reads the configuration, head and member count of a saved file; flags override it", async () => {
    const opts = { embedDim: 5, hiddenSize: 24, numHeads: 6, numKvHeads: 2, numLayers: 2, headDim: 8, rope: true, ropeTheta: 500, seed: 7 };
    const m = await GQA.build({ ...opts, head: { type: "classification", numClasses: 3 } });
    const file = join(tmp, "info-model.safetensors");
    writeFileSync(file, await m.save());
    m.dispose();
    const r = gqa("info", "--model", file, "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.file).toEqual({ path: file, members: 1, head: { type: "classification", numClasses: 3 } });
    expect(j.config).toMatchObject({ embedDim: 5, hiddenSize: 24, numHeads: 6, numKvHeads: 2, numLayers: 2, headDim: 8, rotary: "rope, theta 500", seed: 7 });
    expect(j.paramCount.exact).toBe(GQA.paramCount(opts, { exact: true }));
    // A flag given as well overrides the file's value; the rest still comes from the file.
    const o = JSON.parse(gqa("info", "--model", file, "--num-layers", "3", "--json").stdout);
    expect(o.config).toMatchObject({ embedDim: 5, numLayers: 3, headDim: 8 });
    expect(o.paramCount.exact).toBe(GQA.paramCount({ ...opts, numLayers: 3 }, { exact: true }));
    // Text: the file line, then the summary of its architecture.
    const t = gqa("info", "--model", file);
    expect(t.stdout).toContain(`model file: ${file} (one model; classification head, 3 classes)`);
    expect(t.stdout).toContain("embed_dim 5, hidden_size 24, num_heads 6, num_kv_heads 2 (group 3), head_dim 8, num_layers 2");
    // An ensemble file: member 0's options and the member count.
    const { packEnsemble } = await import("../ts/model-file.js");
    const a = await GQA.build({ ...opts, seed: 1 });
    const b = await GQA.build({ ...opts, seed: 2 });
    const ens = join(tmp, "info-ensemble.safetensors");
    writeFileSync(ens, packEnsemble([await a.save(), await b.save()]));
    a.dispose();
    b.dispose();
    const e = JSON.parse(gqa("info", "--model", ens, "--json").stdout);
    expect(e.file).toMatchObject({ members: 2, head: null });
    expect(e.config.seed).toBe(1);
    // Files that are not gqa models: exit 2 naming the file and what is missing.
    const junk = join(tmp, "info-junk.safetensors");
    writeFileSync(junk, "not a model");
    const bad = gqa("info", "--model", junk);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/info-junk\.safetensors: not a safetensors file/);
    const badCount = join(tmp, "info-bad-count.safetensors");
    writeFileSync(badCount, setMetadata(new Uint8Array(readFileSync(file)), "gqa_ensemble", "x"));
    const bc = gqa("info", "--model", badCount);
    expect(bc.code).toBe(2);
    expect(bc.stderr).toContain("info-bad-count.safetensors: 'gqa_ensemble' metadata must be a member count in [1, 1000], found 'x'");
    const absent = gqa("info", "--model", join(tmp, "absent.safetensors"));
    expect(absent.code).toBe(2);
    expect(absent.stderr).toContain("absent.safetensors: no such file");
  });

  it("bad options exit with code 2 and name the option", () => {
    const a = gqa("info", "--embed-dim", "12", "--hidden-size", "100", "--num-heads", "8");
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/error: INVALID_OPTION: .*hidden/i);
    // The core's option names come back as the flags that set them.
    const a2 = gqa("info", "--embed-dim", "12", "--num-heads", "8", "--num-kv-heads", "3");
    expect(a2.code).toBe(2);
    expect(a2.stderr).toMatch(/error: INVALID_OPTION: invalid option `--num-kv-heads`: expected a divisor of --num-heads=8, found 3/);
    expect(a.stderr).toMatch(/`--hidden-size`/);
    const b = gqa("info", "--embed-dim", "12", "--num-heads", "x");
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/--num-heads.*expected an integer, found 'x'/);
    const c = gqa("info");
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/--embed-dim/);
    const d = gqa("info", "--embed-dim", "4", "--backend", "gpu");
    expect(d.code).toBe(2);
    expect(d.stderr).toMatch(/--backend/);
  });

  it("flags that conflict with the data (checked after reading it) exit 2 and say why", () => {
    const a = gqa("train", "--data", "japanese-vowels", "--loss", "mse", "--epochs", "1", "--out", join(tmpdir(), "gqa-cli-conflict"));
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/^error: --loss goes with --task regression/m);
    const b = gqa("train", "--data", "japanese-vowels", "--huber-delta", "2", "--epochs", "1", "--out", join(tmpdir(), "gqa-cli-conflict"));
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/^error: --huber-delta goes with --loss huber/m);
  });

  it("every command and option has help text", () => {
    for (const cmd of ["info", "train", "eval", "predict"]) {
      const r = gqa(cmd, "--help");
      expect(r.code).toBe(0);
      const opts = r.stdout.split("\n").filter((l) => /^\s+(-\w, )?--[a-z]/.test(l));
      expect(opts.length).toBeGreaterThan(2);
      // An option line is "  --flag <arg>   description": no option without a description.
      for (const l of opts) expect(l.trim()).toMatch(/^\S.*\S\s{2,}\S/);
      expect(r.stdout).toMatch(/--backend/);
    }
    expect(gqa("info", "--help").stdout).toMatch(/FLOPs\/token = 2 \* N_matmul \+ num_layers \* 4 \* T \* num_heads \* head_dim/);
    // info builds no trainer: its --seed drives the weights only.
    expect(gqa("info", "--help").stdout).toMatch(/--seed <n>\s+seed of the weight initialisation; default 0/);
    expect(gqa("train", "--help").stdout).toMatch(/--seed <n>\s+seed of the weight initialisation, dropout\s+and\s+batch\s+order/);
  });
});

describe("gqa error paths", () => {
  it("a malformed .ts file: error: <file>:<line>: <problem>, exit 2", () => {
    copyFileSync(fx("missing_channel.ts"), join(tmp, "Bad_TRAIN.ts"));
    copyFileSync(fx("good_small.ts"), join(tmp, "Bad_TEST.ts"));
    const r = gqa("train", "--data", join(tmp, "Bad"), "--epochs", "1");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`error: ${join(tmp, "Bad_TRAIN.ts")}:10: expected 3 channels, found 2`);
  });

  it("a missing dataset or file exits 2 with a clear message", () => {
    const a = gqa("train", "--data", join(tmp, "nothing-here"));
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/error: .*nothing-here: not a shipped dataset \(japanese-vowels, basic-motions\)/);
    const b = gqa("eval", "--model", join(tmp, "absent.safetensors"), "--data", "basic-motions");
    expect(b.code).toBe(2);
    expect(b.stderr).toContain(`error: ${join(tmp, "absent.safetensors")}: no such file`);
    const c = gqa("predict", "--model", join(tmp, "absent.safetensors"), "--input", join(tmp, "absent.csv"));
    expect(c.code).toBe(2);
    expect(c.stderr).toContain(`error: ${join(tmp, "absent.csv")}: no such file`);
  });

  it("malformed predict inputs and model files exit 2", async () => {
    const csv = join(tmp, "ragged.csv");
    writeFileSync(csv, "a,b\n1,2\n3\n");
    const a = gqa("predict", "--model", join(tmp, "absent.safetensors"), "--input", csv);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain(`error: ${csv}:3: expected 2 columns, found 1`);
    const ok = join(tmp, "ok.csv");
    writeFileSync(ok, "1,2\n3,4\n");
    const junk = join(tmp, "junk.safetensors");
    writeFileSync(junk, "not a model");
    const b = gqa("predict", "--model", junk, "--input", ok);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/error: .*junk\.safetensors: not a safetensors file/);
    // A plain model (no gqa train metadata) is refused with a message that says why.
    const m = await GQA.build({ embedDim: 2, hiddenSize: 8, numHeads: 2, numKvHeads: 1, numLayers: 1 });
    const plain = join(tmp, "plain.safetensors");
    writeFileSync(plain, await m.save());
    m.dispose();
    const c = gqa("predict", "--model", plain, "--input", ok);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/no 'gqa_cli' metadata: this model was not written by `gqa train`/);
    const d = gqa("predict", "--model", plain, "--input", fx("i4_T2_C2.npy"));
    expect(d.code).toBe(2);
    expect(d.stderr).toMatch(/i4_T2_C2\.npy: unsupported dtype '<i4'/);
  });
});

describe("gqa --threads", () => {
  it("train gives the same model bytes and loss curve with 1 and 2 threads; help states the default", () => {
    const tiny = ["--data", "basic-motions", "--hidden-size", "16", "--num-heads", "4", "--num-kv-heads", "2", "--num-layers", "1", "--epochs", "2", "--seed", "3", "--no-progress"];
    const runs = ["1", "2"].map((n) => {
      const dir = join(tmp, `threads-${n}`);
      const r = gqa("train", ...tiny, "--threads", n, "--out", dir);
      expect(r.code, r.stderr).toBe(0);
      if (backendEnv === "native") expect(r.stderr).toMatch(new RegExp(`^backend: native .*, ${n} threads?$`, "m"));
      return { bytes: readFileSync(join(dir, "model.safetensors")), history: JSON.parse(readFileSync(join(dir, "metrics.json"), "utf8")).history };
    });
    expect(runs[0]!.bytes.equals(runs[1]!.bytes)).toBe(true);
    expect(runs[1]!.history).toEqual(runs[0]!.history);
    for (const cmd of ["train", "eval", "predict"]) {
      expect(gqa(cmd, "--help").stdout.replace(/\s+/g, " ")).toContain("--threads <n> compute threads (results are bitwise the same for any count); default: env GQA_THREADS, else all available cores");
    }
    const bad = gqa("train", ...tiny, "--threads", "0", "--out", join(tmp, "threads-0"));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--threads <n>.*expected an integer >= 1, found 0/);
  }, 300_000);
});

describe("model file metadata", () => {
  it("adding gqa_cli metadata keeps every tensor and the core still loads the file", async () => {
    const m = await GQA.build({ embedDim: 3, hiddenSize: 8, numHeads: 4, numKvHeads: 2, numLayers: 2, seed: 5 });
    const bytes = await m.save();
    const meta: CliMetadata = { version: 1, task: "classification", dataset: "x", classLabels: ["a", "b"], channels: 3, standardize: { mean: [1, 2, 3], std: [1, 0.5, 2] } };
    const withMeta = withCliMetadata(bytes, meta);
    expect(readCliMetadata(withMeta, "m")).toEqual(meta);
    // Existing metadata (the core's config) is kept.
    const before = readMetadata(bytes);
    const after = readMetadata(withMeta);
    for (const [k, v] of Object.entries(before)) expect(after[k]).toBe(v);
    // Header length stays a multiple of 8 (data alignment) and the data section is unchanged.
    const hlen = Number(new DataView(withMeta.buffer, withMeta.byteOffset).getBigUint64(0, true));
    expect((8 + hlen) % 8).toBe(0);
    const oldLen = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    expect(Buffer.from(withMeta.subarray(8 + hlen)).equals(Buffer.from(bytes.subarray(8 + oldLen)))).toBe(true);
    const m2 = await GQA.load(withMeta);
    expect(m2.weightsDigest()).toBe(m.weightsDigest());
    m.dispose();
    m2.dispose();
    expect(() => setMetadata(new Uint8Array(4), "k", "v", "f")).toThrow(/not a safetensors file/);
  });
});

describe("metrics and plot helpers", () => {
  it("confusion matrix and per-class accuracy", () => {
    const m = classificationMetrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 4);
    expect(m.accuracy).toBeCloseTo(3 / 5, 12);
    expect(m.confusion).toEqual([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]);
    expect(m.perClass).toEqual([0.5, 1, 0, null]);
  });

  it("the training curve is a well-formed SVG with one point per epoch", () => {
    const svg = trainingCurveSvg([{ epoch: 1, trainLoss: 2, trainAccuracy: 0.2 }, { epoch: 2, trainLoss: 1, trainAccuracy: 0.6, testAccuracy: 0.5 }], "t<1>");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.trim().endsWith("</svg>")).toBe(true);
    expect(svg).toContain("<title>t&lt;1&gt;</title>");
    expect(svg.match(/<circle/g)!.length).toBe(2 + 2 + 1);
  });
});

describe("gqa train / eval / predict", () => {
  const out = join(tmp, "run");
  let trainOut: Run;

  beforeAll(() => {
    // A tiny model and few epochs keep this fast; basic-motions' preset adds mean pooling.
    trainOut = gqa("train", "--data", "basic-motions", "--hidden-size", "32", "--num-heads", "4", "--num-kv-heads", "2", "--num-layers", "1", "--dropout", "0", "--epochs", "20", "--batch-size", "8", "--lr", "3e-3", "--seed", "1", "--out", out);
  }, 600_000);

  it("train writes the model, metrics and plot and reports test accuracy", () => {
    expect(trainOut.stderr).toMatch(/^backend: (native|wasm)/m);
    // BasicMotions: every series has 100 steps, in both splits.
    expect(trainOut.stderr).toMatch(/data: basic-motions: 40 train \/ 40 test cases, 6 channels, 4 classes, T <= 100 \(both splits\)/);
    expect(trainOut.code).toBe(0);
    for (const f of ["model.safetensors", "metrics.json", "training-curve.svg"]) expect(existsSync(join(out, f))).toBe(true);
    const metrics = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
    expect(metrics.history.length).toBe(20);
    expect(metrics.test.count).toBe(40);
    expect(metrics.config.outputMode).toBe("mean_pool");
    expect(metrics.config.numLayers).toBe(1);
    expect(metrics.training.batchSize).toBe(8);
    expect(metrics.training.labelSmoothing).toBe(0);
    // Chance is 25% on BasicMotions' 4 balanced classes.
    expect(metrics.test.accuracy).toBeGreaterThan(0.75);
    expect(metrics.history[19].trainLoss).toBeLessThan(0.5 * metrics.history[0].trainLoss);
    // The head is in the file: 4 classes on 32 features.
    const meta = readMetadata(new Uint8Array(readFileSync(join(out, "model.safetensors"))));
    expect(JSON.parse(meta.gqa_head!)).toEqual({ type: "classification", numClasses: 4 });
    expect(metrics.paramCount).toBeGreaterThan(4 * 32 + 4);
    expect(trainOut.stdout).toContain(`accuracy: ${(100 * metrics.test.accuracy).toFixed(2)}%`);
    expect(readFileSync(join(out, "training-curve.svg"), "utf8")).toMatch(/^<svg/);
  });

  it("japanese-vowels' preset trains with label smoothing 0.1 unless --label-smoothing says otherwise", () => {
    const tiny = ["--data", "japanese-vowels", "--ensemble", "1", "--epochs", "1", "--hidden-size", "8", "--num-heads", "2", "--num-kv-heads", "1", "--num-layers", "1"];
    for (const [extra, want] of [[[], 0.1], [["--label-smoothing", "0"], 0], [["--label-smoothing", "0.3"], 0.3]] as Array<[string[], number]>) {
      const dir = join(tmp, `ls-${want}`);
      const r = gqa("train", ...tiny, ...extra, "--out", dir);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(readFileSync(join(dir, "metrics.json"), "utf8")).training.labelSmoothing).toBe(want);
    }
  }, 120_000);

  it("--val-split holds out part of each class, scores it every epoch and plots it", () => {
    const vout = join(tmp, "run-val");
    const r = gqa("train", "--data", "basic-motions", "--hidden-size", "16", "--num-heads", "4", "--num-kv-heads", "2", "--num-layers", "1", "--epochs", "4", "--val-split", "0.25", "--no-progress", "--seed", "2", "--out", vout);
    expect(r.code).toBe(0);
    // 4 classes x 10 cases: round(0.25 * 10) = 3 per class.
    expect(r.stderr).toMatch(/validation: 12 of the 40 training cases held out \(--val-split 0.25\); training on 28/);
    expect(r.stderr).toMatch(/^epoch 4\/4: loss [\d.]+, acc [\d.]+, val acc [\d.]+, /m);
    const m = JSON.parse(readFileSync(join(vout, "metrics.json"), "utf8"));
    expect(m.training).toMatchObject({ valSplit: 0.25, trainCount: 28, valCount: 12 });
    expect(m.train.count).toBe(28);
    expect(m.history.length).toBe(4);
    for (const h of m.history) {
      expect(h.valAccuracy * 12).toBeCloseTo(Math.round(h.valAccuracy * 12), 9); // a count out of 12
      expect(h.valLoss).toBeGreaterThan(0);
    }
    const svg = readFileSync(join(vout, "training-curve.svg"), "utf8");
    expect(svg).toContain("val accuracy");
    expect(svg).toContain("val loss");
    // Legends sit below the plot areas (y > 260), clear of the lines.
    for (const y of [...svg.matchAll(/<text x="[\d.]+" y="([\d.]+)" font-size="11">(train|val|test) /g)].map((t) => Number(t[1]))) expect(y).toBeGreaterThan(260);
    // The split is the same for a seed and keeps every class on both sides.
    const again = gqa("train", "--data", "basic-motions", "--hidden-size", "16", "--num-heads", "4", "--num-kv-heads", "2", "--num-layers", "1", "--epochs", "4", "--val-split", "0.25", "--no-progress", "--seed", "2", "--out", vout + "2");
    expect(JSON.parse(readFileSync(join(vout + "2", "metrics.json"), "utf8")).history).toEqual(m.history);
    expect(again.code).toBe(0);
  });

  it("eval reproduces the test accuracy and confusion matrix of train", () => {
    const metrics = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
    const r = gqa("eval", "--model", join(out, "model.safetensors"), "--data", "basic-motions", "--json");
    expect(r.code).toBe(0);
    const e = JSON.parse(r.stdout);
    expect(e.accuracy).toBe(metrics.test.accuracy);
    expect(e.confusion).toEqual(metrics.test.confusion);
    const text = gqa("eval", "--model", join(out, "model.safetensors"), "--data", "BasicMotions");
    expect(text.stdout).toContain("confusion matrix");
  });

  it("predict on .ts, CSV and .npy inputs agrees with eval", () => {
    const model = join(out, "model.safetensors");
    const test = join(root, "data", "BasicMotions", "BasicMotions_TEST.ts");
    const r = gqa("predict", "--model", model, "--input", test);
    expect(r.code).toBe(0);
    const p = JSON.parse(r.stdout);
    expect(p.predictions.length).toBe(40);
    for (const q of p.predictions) expect(Object.values(q.probabilities as Record<string, number>).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    const e = JSON.parse(gqa("eval", "--model", model, "--data", "basic-motions", "--json").stdout);
    const labels: string[] = e.classLabels;
    const truth = readFileSync(test, "utf8").trim().split("\n").filter((l) => !/^[#@]/.test(l)).map((l) => l.split(":").pop()!.trim());
    const correct = p.predictions.filter((q: { label: string }, i: number) => q.label === truth[i]).length;
    expect(correct / 40).toBe(e.accuracy);
    // First test case as CSV (rows = steps) gives the same prediction as the .ts input.
    const first = readFileSync(test, "utf8").split("\n").find((l) => l && !/^[#@]/.test(l))!;
    const chans = first.split(":").slice(0, 6).map((c) => c.split(",").map(Number));
    const csv = join(tmp, "case0.csv");
    writeFileSync(csv, ["x,y,z,gx,gy,gz", ...chans[0]!.map((_, t) => chans.map((c) => c[t]).join(","))].join("\n"));
    const c = gqa("predict", "--model", model, "--input", csv, "--format", "csv");
    expect(c.code).toBe(0);
    const [head, row] = c.stdout.trim().split("\n");
    expect(head).toBe(["index", "length", "label", ...labels.map((l) => `p_${l}`)].join(","));
    expect(row!.split(",")[2]).toBe(p.predictions[0].label);
    expect(row!.split(",")[1]).toBe("100");
    // Wrong channel count is refused.
    const bad = gqa("predict", "--model", model, "--input", fx("f4_T4_C3.npy"));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/expected 6 channels \(the model's\), found 3/);
  });

  it.skipIf(NO_WASM)("native and wasm give the same predictions for the saved model", () => {
    const model = join(out, "model.safetensors");
    const test = join(root, "data", "BasicMotions", "BasicMotions_TEST.ts");
    const runs = (["native", "wasm"] as const).map((b) => {
      const r = gqa("predict", "--model", model, "--input", test, "--backend", b);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`^backend: ${b}`, "m"));
      return JSON.parse(r.stdout) as { backend: string; predictions: { label: string; probabilities: Record<string, number> }[] };
    });
    const [n, w] = runs as [(typeof runs)[0], (typeof runs)[0]];
    expect(n.backend).toBe("native");
    expect(w.backend).toBe("wasm");
    expect(w.predictions.map((p) => p.label)).toEqual(n.predictions.map((p) => p.label));
    let maxDiff = 0;
    n.predictions.forEach((p, i) => {
      for (const [k, v] of Object.entries(p.probabilities)) maxDiff = Math.max(maxDiff, Math.abs(v - w.predictions[i]!.probabilities[k]!));
    });
    expect(maxDiff).toBeLessThan(1e-5);
    const e = gqa("eval", "--model", model, "--data", "basic-motions", "--json", "--backend", "wasm");
    expect(JSON.parse(e.stdout).accuracy).toBe(JSON.parse(readFileSync(join(out, "metrics.json"), "utf8")).test.accuracy);
  });

  it("the API reproduces eval's accuracy from the file alone: loadEnsemble + readCliMetadata's standardisation", async () => {
    const { readCliMetadata: readPublic } = await import("gqa");
    const { loadDataset } = await import("../ts/data/datasets.js");
    const { standardize } = await import("../ts/data/standardize.js");
    const { padBatch } = await import("../ts/data/batch.js");
    const bytes = new Uint8Array(readFileSync(join(out, "model.safetensors")));
    const meta = readPublic(bytes, "model.safetensors");
    const { test } = await loadDataset("basic-motions");
    const b = padBatch(standardize(test.series, meta.standardize), meta.channels);
    await GQA.init(backendEnv === "native" || backendEnv === "wasm" ? { backend: backendEnv } : {});
    const [model, ...rest] = await GQA.loadEnsemble(bytes);
    expect(rest.length).toBe(0);
    const p = (await model!.predict(b.data, b.dims, { lengths: b.lengths })).data;
    model!.dispose();
    const K = meta.classLabels.length;
    let ok = 0;
    test.labels.forEach((y, i) => {
      let best = 0;
      for (let k = 1; k < K; k++) if (p[i * K + k]! > p[i * K + best]!) best = k;
      ok += Number(best === y);
    });
    expect(ok / test.labels.length).toBe(JSON.parse(readFileSync(join(out, "metrics.json"), "utf8")).test.accuracy);
  });

  it("a model file from another configuration or dataset exits 2 with a clear message", () => {
    const model = join(out, "model.safetensors");
    const bytes = new Uint8Array(readFileSync(model));
    // Another dataset: 12 channels against the model's 6.
    const a = gqa("eval", "--model", model, "--data", "japanese-vowels");
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/error: .*JapaneseVowels_TEST\.ts:1: the model expects 6 channels, the data has 12/);
    // The stored options disagree with the tensors (hiddenSize 32 -> 64).
    const meta = readMetadata(bytes);
    const cfg = JSON.parse(meta.gqa_config!);
    const wrongCfg = join(tmp, "wrong-config.safetensors");
    writeFileSync(wrongCfg, setMetadata(bytes, "gqa_config", JSON.stringify({ ...cfg, hiddenSize: 64 })));
    const b = gqa("eval", "--model", wrongCfg, "--data", "basic-motions");
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/error: TENSOR_MISMATCH: .*(shape|\[)/);
    // The CLI record names 3 classes, the head has 4.
    const cli = readCliMetadata(bytes, model);
    const wrongHead = join(tmp, "wrong-head.safetensors");
    writeFileSync(wrongHead, withCliMetadata(bytes, { ...cli, classLabels: cli.classLabels.slice(0, 3) }));
    const c = gqa("predict", "--model", wrongHead, "--input", join(root, "data", "BasicMotions", "BasicMotions_TEST.ts"));
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/error: INVALID_INPUT: .*wrong-head\.safetensors: expected a classification head with 3 classes .*found 4 classes/);
  });
});

describe("gqa predict --stream", () => {
  it("one prediction per stdin line, the last equal to predict over the whole series; refusals exit 2", () => {
    const dir = join(tmp, "stream");
    // A tiny sliding-window model (the fixed recipe: --hidden-size) on BasicMotions' 6 channels.
    const r = gqa("train", "--data", "basic-motions", "--hidden-size", "16", "--num-heads", "4", "--num-kv-heads", "2", "--num-layers", "2", "--rope", "--sliding-window", "8", "--epochs", "1", "--seed", "4", "--no-progress", "--out", dir);
    expect(r.code, r.stderr).toBe(0);
    const model = join(dir, "model.safetensors");
    const rows = Array.from({ length: 40 }, (_, p) => Array.from({ length: 6 }, (_, k) => (Math.sin(p * 0.3 + k) * 2).toFixed(4)));
    const csv = join(tmp, "stream-series.csv");
    writeFileSync(csv, rows.map((r) => r.join(",")).join("\n") + "\n");
    const whole = gqa("predict", "--model", model, "--input", csv);
    expect(whole.code, whole.stderr).toBe(0);
    const want = JSON.parse(whole.stdout).predictions[0].probabilities as Record<string, number>;
    // Space-separated lines work as well as commas; blank lines are skipped.
    const text = rows.map((r, i) => r.join(i % 2 ? " " : ",")).join("\n") + "\n\n";
    const s = spawnSync(process.execPath, [cli, "predict", "--model", model, "--stream"], { encoding: "utf8", cwd: root, input: text, timeout: 120_000 });
    expect(s.status, s.stderr).toBe(0);
    const lines = s.stdout.trim().split("\n").map((l) => JSON.parse(l) as { index: number; label: string; probabilities: Record<string, number> });
    expect(lines.map((l) => l.index)).toEqual(rows.map((_, i) => i));
    const last = lines.at(-1)!.probabilities;
    for (const k of Object.keys(want)) expect(Math.abs(last[k]! - want[k]!), k).toBeLessThanOrEqual(1e-5);
    // A bad line names it; a model without a window is refused.
    const bad = spawnSync(process.execPath, [cli, "predict", "--model", model, "--stream"], { encoding: "utf8", cwd: root, input: "1,2,3\n", timeout: 120_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/<stdin>:1: expected 6 values/);
    const full = join(tmp, "stream-full");
    expect(gqa("train", "--data", "basic-motions", "--hidden-size", "8", "--num-heads", "2", "--num-kv-heads", "1", "--num-layers", "1", "--epochs", "1", "--no-progress", "--out", full).code).toBe(0);
    const refused = spawnSync(process.execPath, [cli, "predict", "--model", join(full, "model.safetensors"), "--stream"], { encoding: "utf8", cwd: root, input: rows[0]!.join(",") + "\n", timeout: 120_000 });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/--sliding-window/);
    expect(gqa("predict", "--model", model).code).toBe(2);
  }, 300_000);
});
