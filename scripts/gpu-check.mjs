// The TypeScript API on the CUDA backend, against the native CPU backend in the same process,
// and its speed against PyTorch on the same GPU. Run by `scripts/gpu-check.sh --run` on a GPU
// machine (after the Rust CUDA tests); here, `--backend native --quick` runs the same script with
// the CPU addon in place of the GPU one (a dry run of the script itself, which gpu-check.sh does).
//
//   node scripts/gpu-check.mjs [--backend cuda|native] [--quick] [--no-bench] [--out DIR]
//
// Checks (each prints its figure and fails the run past its bound):
//  - predict and forward (every output mode, padded batch): f32 within 1e-4 relative to the CPU,
//    bf16 (GQA.init({ dtype: "bf16" })) within 2e-2;
//  - a session (prefill 9, decode steps of 1, a chunk of 6) equals the full forward on the GPU;
//  - 20 fit steps: the loss curve within 1e-3 relative of the CPU's.
// Bench (medians of rounds, each round one timed call after warm-up): workload (a) (B=32, T=60,
// E=287, H=256, 8/2 heads, 4 layers), (b) at T=4096 and 16384 (E=H=512, 16/4 heads, 1 layer,
// outputMode all), and one training step of (a) (9 classes, AdamW, clip 1.0), against PyTorch
// eager on the same GPU through bench/torch_gqa.py (GQA_TORCH_DEVICE=cuda: the project's
// PyTorch twin, F.scaled_dot_product_attention with enable_gqa=True, torch.optim.AdamW), on the
// same weights and inputs, outputs compared before timing. Prints ratios (torch time / gqa time)
// and TFLOP/s, and writes the figures to DIR/gpu-check.json.

import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import { GQA } from "../dist/index.js";

const { values: args } = parseArgs({
  options: {
    backend: { type: "string", default: "cuda" },
    quick: { type: "boolean", default: false },
    "no-bench": { type: "boolean", default: false },
    out: { type: "string", default: join(tmpdir(), "gqa-gpu-check") },
    rounds: { type: "string", default: "5" },
  },
});
const DEV = args.backend;
const QUICK = args.quick;
mkdirSync(args.out, { recursive: true });
const results = { backend: DEV, checks: {}, bench: [] };
let failed = 0;

function pseudo(n, seed) {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

function maxRel(got, want) {
  let scale = 0, diff = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
  }
  return diff / Math.max(scale, 1e-30);
}

function check(name, value, bound) {
  const ok = Number.isFinite(value) && value <= bound;
  if (!ok) failed++;
  results.checks[name] = { value, bound, ok };
  console.log(`${ok ? "ok  " : "FAIL"} ${name}: ${value.toExponential(3)} (bound ${bound})`);
}

/** Runs `fn` with the backend `name` (dtype for cuda) loaded; models built before keep theirs. */
async function on(name, dtype, fn) {
  await GQA.init(name === "cuda" ? { backend: "cuda", dtype } : { backend: name });
  return fn();
}

const SMALL = { embedDim: 12, hiddenSize: 64, numHeads: 8, numKvHeads: 2, numLayers: 2, rope: true, seed: 5 };

async function apiChecks() {
  const [B, T, E] = [3, 37, 12];
  const x = pseudo(B * T * E, 17);
  const lengths = [37, 20, 1];
  for (const dtype of DEV === "cuda" ? ["f32", "bf16"] : ["f32"]) {
    const bound = dtype === "f32" ? 1e-4 : 2e-2;
    for (const outputMode of ["last_timestep", "mean_pool", "all"]) {
      const opts = { ...SMALL, outputMode, head: outputMode === "all" ? undefined : { type: "classification", numClasses: 5 } };
      const cpu = await on("native", null, () => GQA.build(opts));
      const bytes = await cpu.save();
      const dev = await on(DEV, dtype, () => GQA.load(bytes));
      for (const padded of [false, true]) {
        const o = padded ? { lengths } : {};
        const want = await cpu.forward(x, [B, T, E], o);
        const got = await dev.forward(x, [B, T, E], o);
        check(`${DEV} ${dtype} forward ${outputMode}${padded ? " padded" : ""} (rel to CPU)`, maxRel(got.data, want.data), bound);
        if (opts.head) {
          const p = await dev.predict(x, [B, T, E], o);
          check(`${DEV} ${dtype} predict ${outputMode}${padded ? " padded" : ""} (rel to CPU)`, maxRel(p.data, (await cpu.predict(x, [B, T, E], o)).data), bound);
        }
      }
      cpu.dispose();
      dev.dispose();
    }
    // Session vs the full forward, both on the device.
    const dev = await on(DEV, dtype, () => GQA.build({ ...SMALL, outputMode: "last_timestep" }));
    const [b, t] = [2, 20];
    const xs = pseudo(b * t * E, 23);
    const s = await dev.session({ batch: b, maxLen: t });
    let at = 0, worst = 0;
    for (const len of [9, 1, 1, 1, 1, 1, 6]) {
      const chunk = new Float32Array(b * len * E);
      for (let r = 0; r < b; r++) chunk.set(xs.subarray((r * t + at) * E, (r * t + at + len) * E), r * len * E);
      const got = await s.push(chunk, [b, len, E]);
      at += len;
      const prefix = new Float32Array(b * at * E);
      for (let r = 0; r < b; r++) prefix.set(xs.subarray(r * t * E, (r * t + at) * E), r * at * E);
      worst = Math.max(worst, maxRel(got.data, (await dev.forward(prefix, [b, at, E])).data));
    }
    check(`${DEV} ${dtype} session = full forward (rel)`, worst, 1e-4);
    s.dispose?.();
    dev.dispose();
  }
  // 20 fit steps on the device against the CPU from the same weights and data.
  const [n, tt, k] = [32, 16, 4];
  const data = { x: pseudo(n * tt * E, 29), dims: [n, tt, E], labels: Array.from({ length: n }, (_, i) => (i * 7 + 3) % k) };
  const fitOpts = { epochs: 5, batchSize: 8, lr: 3e-3, shuffle: false };
  const trainOpts = { ...SMALL, outputMode: "mean_pool", head: { type: "classification", numClasses: k } };
  const cpu = await on("native", null, () => GQA.build(trainOpts));
  const bytes = await cpu.save();
  const dev = await on(DEV, "f32", () => GQA.load(bytes));
  const losses = async (m) => {
    const out = [];
    await m.fit(data, { ...fitOpts, onStep: (r) => void out.push(r.loss) });
    return out;
  };
  const [lc, ld] = [await losses(cpu), await losses(dev)];
  const rel = Math.max(...lc.map((l, i) => Math.abs(l - ld[i]) / Math.abs(l)));
  check(`${DEV} fit: ${ld.length} steps, loss curve (rel to CPU)`, rel, 1e-3);
  results.checks.losses = { cpu: lc, device: ld };
}

// ---------------------------------------------------------------------------------------------
// Bench against PyTorch on the same device.

const A = QUICK ? { B: 2, T: 8, opts: { embedDim: 12, hiddenSize: 32, numHeads: 4, numKvHeads: 2, numLayers: 2 } }
  : { B: 32, T: 60, opts: { embedDim: 287, hiddenSize: 256, numHeads: 8, numKvHeads: 2, numLayers: 4 } };
const BOPTS = QUICK ? { embedDim: 64, hiddenSize: 64, numHeads: 16, numKvHeads: 4, numLayers: 1 }
  : { embedDim: 512, hiddenSize: 512, numHeads: 16, numKvHeads: 4, numLayers: 1 };
const FORWARDS = [
  { name: "a", B: A.B, T: A.T, opts: { ...A.opts, outputMode: "last_timestep" } },
  { name: "b4096", B: 1, T: QUICK ? 128 : 4096, opts: { ...BOPTS, outputMode: "all" } },
  { name: "b16384", B: 1, T: QUICK ? 256 : 16384, opts: { ...BOPTS, outputMode: "all" } },
];

/** Forward FLOPs (matrix products only: projections, FFN, QK^T and PV over the causal half). */
function forwardFlops({ B, T, opts: o }) {
  const H = o.hiddenSize, E = o.embedDim, D = H / o.numHeads, kv = o.numKvHeads * D;
  const proj = E !== H ? 2 * B * T * E * H : 0;
  const perLayer = 2 * B * T * (H * H + 2 * H * kv + H * H + 8 * H * H) + 2 * 2 * B * o.numHeads * D * (T * (T + 1)) / 2;
  return proj + o.numLayers * perLayer;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function torchWorker() {
  const py = process.env.GQA_BENCH_PYTHON ?? "python3";
  const child = spawn(py, ["bench/torch_gqa.py", "--serve"], { stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, GQA_TORCH_DEVICE: DEV === "cuda" ? "cuda" : "cpu" } });
  const lines = createInterface({ input: child.stdout });
  const pending = [];
  lines.on("line", (l) => pending.shift()?.(JSON.parse(l)));
  const ask = (req) => new Promise((resolve, reject) => {
    pending.push((r) => (r.error ? reject(new Error(`torch: ${r.error}`)) : resolve(r)));
    child.stdin.write(JSON.stringify(req) + "\n");
  });
  return { ask, close: () => child.stdin.end() };
}

async function bench() {
  const rounds = Number(args.rounds);
  const torch = torchWorker();
  const info = await torch.ask({ cmd: "info" });
  console.log(`PyTorch ${info.torch ?? "?"} on ${info.device ?? "?"}`);
  await GQA.init(DEV === "cuda" ? { backend: "cuda" } : { backend: DEV });
  console.log(`gqa on ${GQA.device} (${GQA.backendFile})`);
  for (const w of FORWARDS) {
    try {
      await benchForward(torch, w, rounds);
    } catch (e) {
      // e.g. OUT_OF_MEMORY: candle's attention holds the [NH, T, T] scores (17 GB at T=16384).
      console.log(`${w.name.padEnd(8)} not measured: ${e.code ?? ""} ${e.message.split("\n")[0]}`);
      results.bench.push({ workload: w.name, error: `${e.code ?? ""} ${e.message.split("\n")[0]}` });
    }
  }
  await benchTrain(torch, rounds);
  torch.close();
}

/** One forward workload: same weights and input on both sides, outputs compared, then timed. */
async function benchForward(torch, w, rounds) {
  const model = await GQA.build({ ...w.opts, seed: 1 });
  try {
    const file = join(args.out, `${w.name}.safetensors`);
    writeFileSync(file, await model.save());
    const x = pseudo(w.B * w.T * w.opts.embedDim, 7);
    const input = join(args.out, `${w.name}.f32`);
    writeFileSync(input, x);
    const dims = [w.B, w.T, w.opts.embedDim];
    const out = join(args.out, `${w.name}.out.f32`);
    await torch.ask({ cmd: "load", key: w.name, model: file });
    const t0 = await torch.ask({ cmd: "forward", key: w.name, input, dims, reps: 1, out });
    const mine = await model.forward(x, dims);
    const buf = readFileSync(out);
    const theirs = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    check(`bench ${w.name}: gqa vs torch output (rel)`, maxRel(mine.data, theirs), 1e-3);
    const times = [];
    for (let r = 0; r < rounds; r++) {
      const s = performance.now();
      await model.forward(x, dims);
      times.push(performance.now() - s);
    }
    const tt = (await torch.ask({ cmd: "forward", key: w.name, input, dims, reps: rounds, out: null })).times;
    const [g, p] = [median(times), median(tt)];
    const tflops = (ms) => forwardFlops(w) / (ms * 1e-3) / 1e12;
    results.bench.push({ workload: w.name, gqaMs: g, torchMs: p, ratio: p / g, gqaTflops: tflops(g), torchTflops: tflops(p) });
    console.log(`${w.name.padEnd(8)} gqa ${g.toFixed(3)} ms (${tflops(g).toFixed(2)} TFLOP/s)  torch ${p.toFixed(3)} ms (${tflops(p).toFixed(2)} TFLOP/s)  speed ${(p / g).toFixed(2)}x (torch/gqa; first torch call ${t0.times[0].toFixed(1)} ms)`);
    await torch.ask({ cmd: "free", key: w.name });
  } finally {
    model.dispose();
  }
}

/** One training step of (a) on both sides: the first losses compared, then steps timed. */
async function benchTrain(torch, rounds) {
  const k = 9;
  const model = await GQA.build({ ...A.opts, outputMode: "last_timestep", dropout: 0, seed: 1, head: { type: "classification", numClasses: k } });
  const file = join(args.out, "train.safetensors");
  writeFileSync(file, await model.save());
  const x = pseudo(A.B * A.T * A.opts.embedDim, 11);
  const input = join(args.out, "train.f32");
  writeFileSync(input, x);
  const dims = [A.B, A.T, A.opts.embedDim];
  const labels = Array.from({ length: A.B }, (_, i) => i % k);
  await torch.ask({ cmd: "train_setup", key: "train", model: file, input, dims, labels, lengths: null, lr: 1e-3, weight_decay: 0.01, clip: 1.0 });
  const times = [];
  const losses = [];
  await model.fit({ x, dims, labels }, {
    epochs: rounds + 1, batchSize: A.B, lr: 1e-3, weightDecay: 0.01, clipNorm: 1.0, warmupRatio: 0, shuffle: false,
    onStep: (r) => {
      const now = performance.now();
      if (losses.length > 0) times.push(now - last);
      last = now;
      losses.push(r.loss);
    },
  });
  const tr = await torch.ask({ cmd: "train", key: "train", reps: rounds + 1 });
  check("bench train: first-step loss gqa vs torch (rel)", Math.abs(losses[0] - tr.losses[0]) / Math.abs(tr.losses[0]), 1e-3);
  const [g, p] = [median(times), median(tr.times.slice(1))];
  results.bench.push({ workload: "train", gqaMs: g, torchMs: p, ratio: p / g });
  console.log(`train    gqa ${g.toFixed(3)} ms  torch ${p.toFixed(3)} ms  speed ${(p / g).toFixed(2)}x (torch/gqa)`);
}
let last = performance.now();

console.log(`gpu-check (${DEV}${QUICK ? ", quick" : ""})`);
await apiChecks();
if (!args["no-bench"]) await bench();
writeFileSync(join(args.out, "gpu-check.json"), JSON.stringify(results, null, 2));
console.log(`${failed === 0 ? "all checks passed" : `${failed} check(s) FAILED`}; figures in ${join(args.out, "gpu-check.json")}`);
process.exit(failed === 0 ? 0 : 1);
