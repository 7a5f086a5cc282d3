/**
 * The PyTorch twin (python/, package gqa_torch) against gqa, on the backend named by GQA_BACKEND:
 *
 * 1. the twin's forward, losses, gradients and AdamW step against the PyTorch reference fixtures
 *    (fixtures/, scripts/gen_fixtures.py: every output mode, padding, MHA/GQA/MQA, rope, yarn) and
 *    its file handling (python/tests, plain unittest);
 * 2. `gqa export-data` writes JapaneseVowels as standardised `.npy` arrays; `torchrun
 *    --nproc_per_node 2` (gloo, CPU) trains the twin with DistributedDataParallel on them; gqa loads
 *    the checkpoint and gives the same class probabilities (within 1e-5) and predictions on the test
 *    split; `gqa eval` scores it on the raw UEA files with the same accuracy; two processes take the
 *    same steps as one;
 * 3. a model trained briefly through gqa's API loads in the twin with the same probabilities.
 *
 * Skipped, with the reason in the title, only where no Python with torch, safetensors and numpy is
 * found (test/helpers/python.ts: GQA_PYTHON, else .venv from scripts/setup.sh, else python3).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GQA, type Model } from "gqa";
import { parseNpy } from "../ts/data/npy.js";
import { BACKEND } from "./helpers/expect.js";
import { findPython, REPO_ROOT } from "./helpers/python.js";

const py = findPython(["torch", "safetensors", "numpy"]);
const title = py.ok
  ? `PyTorch twin (torch ${py.versions.torch}) <-> gqa (${BACKEND})`
  : `PyTorch twin <-> gqa: SKIPPED, ${py.reason}`;

const cli = join(REPO_ROOT, "dist", "cli", "index.js");
const tmp = mkdtempSync(join(tmpdir(), "gqa-torch-twin-"));
const data = join(tmp, "jv");
/** The model both directions train: small, so that the file stays fast on 2 cores. */
const ARCH = { hiddenSize: 32, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true } as const;
/** What "the same result" means for probabilities (SPEC's float32 round-off, with margin). */
const PROB_TOL = 1e-5;

interface Run {
  code: number | null;
  /** stdout and stderr together (for failure messages). */
  out: string;
  stdout: string;
}

/** Runs the project's Python with python/src on the path (no install needed). */
function python(args: string[], timeoutMs = 300_000): Run {
  const env = { ...process.env, PYTHONPATH: join(REPO_ROOT, "python", "src") + (process.env.PYTHONPATH ? `:${process.env.PYTHONPATH}` : ""), OMP_NUM_THREADS: "1" };
  const r = spawnSync(py.python, args, { cwd: REPO_ROOT, env, encoding: "utf8", timeout: timeoutMs });
  return { code: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}`, stdout: r.stdout ?? "" };
}

function gqaCli(...args: string[]): Run {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: REPO_ROOT, env: { ...process.env }, encoding: "utf8", timeout: 300_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}`, stdout: r.stdout };
}

/** An `.npy` array: float32 through the CLI's own reader, int64 read here. */
function npy(path: string): { data: Float32Array | number[]; shape: number[] } {
  const bytes = new Uint8Array(readFileSync(path));
  const header = new TextDecoder("latin1").decode(bytes.subarray(10, 10 + (bytes[8]! | (bytes[9]! << 8))));
  if (!header.includes("'<i8'")) {
    const a = parseNpy(bytes, path);
    return { data: a.data, shape: a.shape };
  }
  const shape = /'shape': \(([^)]*)\)/.exec(header)![1]!.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const start = 10 + header.length;
  const view = new DataView(bytes.buffer, bytes.byteOffset + start);
  const n = shape.reduce((a, b) => a * b, 1);
  return { data: Array.from({ length: n }, (_, i) => Number(view.getBigInt64(8 * i, true))), shape };
}

interface Split {
  x: Float32Array;
  dims: [number, number, number];
  lengths: number[];
  labels: number[];
}
function split(name: "train" | "test"): Split {
  const x = npy(join(data, `${name}_x.npy`));
  return {
    x: x.data as Float32Array,
    dims: x.shape as [number, number, number],
    lengths: npy(join(data, `${name}_lengths.npy`)).data as number[],
    labels: npy(join(data, `${name}_labels.npy`)).data as number[],
  };
}

function argmax(p: Float32Array, k: number): number[] {
  return Array.from({ length: p.length / k }, (_, i) => {
    let best = 0;
    for (let j = 1; j < k; j++) if (p[i * k + j]! > p[i * k + best]!) best = j;
    return best;
  });
}
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}
const accuracy = (pred: number[], labels: number[]) => pred.filter((p, i) => p === labels[i]).length / labels.length;

describe.skipIf(!py.ok)(title, () => {
  let test: Split;
  beforeAll(async () => {
    if (!existsSync(join(REPO_ROOT, "dist", "cli", "export-data.js"))) {
      const r = spawnSync(join(REPO_ROOT, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: REPO_ROOT, encoding: "utf8" });
      if (!existsSync(join(REPO_ROOT, "dist", "cli", "export-data.js"))) throw new Error(`could not build the CLI: ${r.stdout}${r.stderr}`);
    }
    await GQA.init();
    const r = gqaCli("export-data", "--data", "japanese-vowels", "--out", data);
    expect(r.code, r.out).toBe(0);
    test = split("test");
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it("the twin matches the PyTorch reference fixtures: every output mode, padding, rope, yarn; losses, gradients, AdamW; files", () => {
    const r = python(["-m", "unittest", "discover", "-s", join(REPO_ROOT, "python", "tests"), "-v"]);
    console.log(r.out.split("\n").filter((l) => /max\|diff\||^Ran /.test(l)).join("\n"));
    expect(r.code, r.out).toBe(0);
    const ran = Number(/^Ran (\d+) tests?/m.exec(r.out)?.[1]);
    expect(ran).toBeGreaterThanOrEqual(9);
    expect(r.out).toMatch(/^OK$/m);
    // Every model fixture of scripts/gen_fixtures.py was compared.
    for (const f of ["out_last_timestep", "out_all", "out_mean_pool", "padded_last_timestep", "padded_all", "padded_mean_pool", "rope_padded", "yarn", "yarn_ramp", "mqa", "train_cls"]) {
      expect(r.out).toMatch(new RegExp(`^\\s+${f}\\s+forward\\s+max\\|diff\\|`, "m"));
    }
  });

  it("export-data writes the CLI's standardised arrays: [N, T, C] float32 zero-padded, int64 lengths and labels, meta.json", () => {
    const meta = JSON.parse(readFileSync(join(data, "meta.json"), "utf8"));
    expect(meta).toMatchObject({ format: "gqa-export-data", version: 1, dataset: "japanese-vowels", channels: 12, train: { cases: 270 }, test: { cases: 370 } });
    expect(meta.classLabels).toEqual(["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    const train = split("train");
    expect(train.dims).toEqual([270, meta.train.maxLength, 12]);
    expect(test.dims).toEqual([370, meta.test.maxLength, 12]);
    expect(Math.max(...train.lengths)).toBe(train.dims[1]);
    expect(Math.min(...train.lengths)).toBeGreaterThanOrEqual(1);
    expect(new Set(train.labels)).toEqual(new Set([0, 1, 2, 3, 4, 5, 6, 7, 8]));
    // Standardised with the training split's statistics: per channel mean 0, std 1 over valid steps.
    const [N, T, C] = train.dims;
    const sum = new Float64Array(C), sq = new Float64Array(C);
    let steps = 0, padNonZero = 0;
    for (let b = 0; b < N; b++) {
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < C; c++) {
          const v = train.x[(b * T + t) * C + c]!;
          if (t < train.lengths[b]!) {
            sum[c]! += v;
            sq[c]! += v * v;
          }
          else if (v !== 0) padNonZero++;
        }
        if (t < train.lengths[b]!) steps++;
      }
    }
    expect(padNonZero).toBe(0);
    for (let c = 0; c < C; c++) {
      expect(Math.abs(sum[c]! / steps)).toBeLessThan(1e-5);
      expect(Math.abs(Math.sqrt(sq[c]! / steps) - 1)).toBeLessThan(1e-4);
    }
  });

  describe("torchrun --nproc_per_node 2 (gloo, DDP) -> gqa", () => {
    const torchModel = join(tmp, "torch.safetensors");
    // What gqa_torch.train writes to --metrics (the fields this test reads).
    let metrics: { worldSize: number; backend: string; seconds: number; history: { epoch: number; trainLoss: number }[]; test: { accuracy: number } };
    let torchProbs: Float32Array;
    beforeAll(() => {
      const args = ["--data", data, "--epochs", "3", "--hidden-size", `${ARCH.hiddenSize}`, "--num-heads", `${ARCH.numHeads}`, "--num-kv-heads", `${ARCH.numKvHeads}`,
        "--num-layers", `${ARCH.numLayers}`, "--dropout", "0", "--seed", "1"];
      const r = python(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gqa_torch.train", ...args,
        "--out", torchModel, "--predictions", join(tmp, "torch-probs.npy"), "--metrics", join(tmp, "torch-metrics.json"), "--dist-backend", "gloo", "--device", "cpu"]);
      expect(r.code, r.out).toBe(0);
      metrics = JSON.parse(readFileSync(join(tmp, "torch-metrics.json"), "utf8"));
      torchProbs = npy(join(tmp, "torch-probs.npy")).data as Float32Array;
      console.log(`twin, 2 processes (gloo): ${metrics.history.map((h) => `epoch ${h.epoch} loss ${h.trainLoss.toFixed(4)}`).join(", ")}; test accuracy ${(100 * metrics.test.accuracy).toFixed(2)}% in ${metrics.seconds.toFixed(1)} s`);
    }, 300_000);

    it("trained on 2 processes and learnt the task", () => {
      expect(metrics.worldSize).toBe(2);
      expect(metrics.backend).toBe("gloo");
      expect(metrics.history).toHaveLength(3);
      expect(metrics.history[2]!.trainLoss).toBeLessThan(metrics.history[0]!.trainLoss / 2);
      expect(metrics.test.accuracy).toBeGreaterThan(0.85);
    });

    it("gqa loads the checkpoint and gives the same probabilities (1e-5) and predictions on the test split", async () => {
      const m: Model = await GQA.load(new Uint8Array(readFileSync(torchModel)));
      try {
        expect(m.backend).toBe(BACKEND === "auto" ? m.backend : BACKEND);
        expect(m.head).toEqual({ type: "classification", numClasses: 9 });
        expect(m.config).toMatchObject({ embedDim: 12, ...ARCH, dropout: 0, outputMode: "last_timestep", seed: 1 });
        const p = (await m.predict(test.x, test.dims, { lengths: test.lengths })).data;
        const d = maxAbsDiff(p, torchProbs);
        const same = argmax(p, 9).filter((c, i) => c === argmax(torchProbs, 9)[i]).length;
        console.log(`torch -> gqa (${m.backend}): max |prob diff| ${d.toExponential(2)}, ${same}/370 predictions equal, accuracy ${(100 * accuracy(argmax(p, 9), test.labels)).toFixed(2)}%`);
        expect(d).toBeLessThan(PROB_TOL);
        expect(same).toBe(370);
        expect(accuracy(argmax(p, 9), test.labels)).toBeCloseTo(metrics.test.accuracy, 12);
      } finally {
        m.dispose();
      }
    });

    it("gqa eval scores the checkpoint on the raw UEA files (its gqa_cli record) with the twin's accuracy", () => {
      const r = gqaCli("eval", "--model", torchModel, "--data", "japanese-vowels", "--json");
      expect(r.code, r.out).toBe(0);
      const j = JSON.parse(r.stdout);
      expect(j.count).toBe(370);
      expect(j.accuracy).toBeCloseTo(metrics.test.accuracy, 12);
    });

    it("2 processes take the same steps as 1 (dropout 0): test probabilities within 1e-4 after 27 steps", async () => {
      const one = join(tmp, "torch-1proc.safetensors");
      const args = ["--data", data, "--epochs", "3", "--hidden-size", `${ARCH.hiddenSize}`, "--num-heads", `${ARCH.numHeads}`, "--num-kv-heads", `${ARCH.numKvHeads}`,
        "--num-layers", `${ARCH.numLayers}`, "--dropout", "0", "--seed", "1", "--quiet", "--out", one];
      const r = python(["-m", "gqa_torch.train", ...args]);
      expect(r.code, r.out).toBe(0);
      // Compared through gqa: both files load, and their weights (saved bytes) agree.
      const [a, b] = await Promise.all([GQA.load(new Uint8Array(readFileSync(torchModel))), GQA.load(new Uint8Array(readFileSync(one)))]);
      try {
        const pa = (await a.predict(test.x, test.dims, { lengths: test.lengths })).data;
        const pb = (await b.predict(test.x, test.dims, { lengths: test.lengths })).data;
        const d = maxAbsDiff(pa, pb);
        console.log(`1 process vs 2 processes: max |prob diff| ${d.toExponential(2)} on the test split`);
        expect(d).toBeLessThan(1e-4);
      } finally {
        a.dispose();
        b.dispose();
      }
    }, 300_000);
  });

  describe("gqa (TS API) -> twin", () => {
    it("a model trained briefly by gqa loads in the twin with the same probabilities (1e-5) and predictions", async () => {
      const train = split("train");
      const m = await GQA.build({ embedDim: 12, ...ARCH, dropout: 0.1, seed: 7, head: { type: "classification", numClasses: 9 } });
      let p: Float32Array;
      const file = join(tmp, "gqa.safetensors");
      try {
        await m.fit({ x: train.x, dims: train.dims, lengths: train.lengths, labels: train.labels }, { epochs: 3, batchSize: 32, lr: 3e-3, seed: 7 });
        p = (await m.predict(test.x, test.dims, { lengths: test.lengths })).data;
        await m.saveFile(file);
      } finally {
        m.dispose();
      }
      const r = python(["-m", "gqa_torch.predict", "--model", file, "--data", data, "--out", join(tmp, "gqa-probs-torch.npy"), "--json"]);
      expect(r.code, r.out).toBe(0);
      const summary = JSON.parse(r.stdout.trim().split("\n").pop()!);
      const q = npy(join(tmp, "gqa-probs-torch.npy")).data as Float32Array;
      const d = maxAbsDiff(p, q);
      const same = argmax(p, 9).filter((c, i) => c === argmax(q, 9)[i]).length;
      console.log(`gqa (${BACKEND}) -> torch: max |prob diff| ${d.toExponential(2)}, ${same}/370 predictions equal, accuracy ${(100 * summary.accuracy).toFixed(2)}%`);
      expect(d).toBeLessThan(PROB_TOL);
      expect(same).toBe(370);
      expect(summary.accuracy).toBeCloseTo(accuracy(argmax(p, 9), test.labels), 12);
      expect(summary.accuracy).toBeGreaterThan(0.5); // it did train (chance is 1/9)
    }, 300_000);
  });
});
