#!/usr/bin/env node
// `npm run bench`: gqa against its peers, in one command and one run.
//
//   npm run bench                       full run (every workload, threads 1 and 2, 3 rounds)
//   npm run bench -- --quick            tiny sizes, 1 round: a smoke test of every code path (CI)
//   npm run bench -- --workloads a,a-all,b2048,b4096,b16384,decode,train,train-main
//   npm run bench -- --workloads b4096,w4096,b16384,w16384,b32768,w32768 --impls gqa-native,pytorch
//                    --threads 1,2  --rounds 3  --reps N (fixed timed runs per round; default adaptive)
//                    --impls gqa-native,gqa-wasm,ort-node,ort-web,tfjs-wasm,pytorch
//                    --decode-lengths 2048,8192,32768  --out bench/results/latest.json
//                    --no-mem-guard (run the T x T-materialising peers even when they cannot fit)
//
// Needs the built package (`bash scripts/setup.sh`: dist/, the addon, the wasm package) and the
// bench devDependencies (onnxruntime-node/-web 1.30, @tensorflow/tfjs-core/-backend-wasm 4.22,
// protobufjs). PyTorch runs when python with torch, numpy and safetensors is found (env
// GQA_BENCH_PYTHON, else the project's .venv made by scripts/setup.sh, else python3); otherwise its rows say "skipped". numpy, when present, also
// measures the GEMM peak.
//
// Design. One child process per thread count n (this file with --child), started with
// GQA_THREADS=n, RAYON_NUM_THREADS=n, OMP_NUM_THREADS=n, TORCH_THREADS=n (and OpenBLAS/MKL), so
// that every implementation in it gets n threads: gqa native also gets GQA.init({threads: n});
// onnxruntime-node intraOpNumThreads n; onnxruntime-web ort.env.wasm.numThreads = n (worker
// threads); TensorFlow.js wasm setThreadsCount(n) (its threaded build does not load in Node, so
// it runs 1 thread: the table says so); gqa wasm runs its threaded module (shared memory, a rayon
// pool on worker_threads) with n workers at n > 1 and its single-threaded module at n = 1; PyTorch
// torch.set_num_threads(n) in a persistent worker (bench/torch_gqa.py --serve). Within a child
// every workload is run on the same weights (gqa's, seed 1, saved as safetensors and read by
// every peer: bench/onnx-graph.mjs builds the ONNX graph, bench/tfjs-gqa.mjs the tf.js twin) and
// the same input. Each peer's output is checked against gqa native (max abs difference <= 1e-4)
// before it is timed; a peer that disagrees or fails is reported, not timed. Then rounds
// alternate between the implementations (the order reversed every other round), so all of them
// see the same spells of machine load: per round the median of several timed runs (3-10, fewer
// when one run takes seconds; the "runs" column), and the table reports the median over rounds.
//
// Columns: ms (median over rounds of the per-round median), tokens/s (B*T / time), GFLOP/s from
// the formula printed with each table (it counts the full T x T score and value products, not
// the causal half, and the same for every implementation), % of the
// GEMM peak measured in the same child (numpy sgemm 4096^3, or onnxruntime-node MatMul 2048^3
// without numpy), the SIMD path that ran, the max abs difference to gqa native, and gqa/peer =
// gqa time / peer time (median of the per-round ratios; < 1: gqa is faster), for gqa native and
// for gqa wasm. "decode" times one KV-cache push at cache length L against the time to read the
// KV cache once at the memory bandwidth measured in the same process (a large copy on n
// threads). "train" times one optimisation step of (a) with a 9-class head (cross-entropy, clip
// 1.0, AdamW lr 1e-3 wd 0.01, dropout 0) against PyTorch; "train-main" the same step for the
// model of `npm run main` (ts/cli/train.ts TRAIN_DEFAULTS: embedDim 12, hidden 64, 4/2 heads,
// 2 layers, rope, last_timestep; dropout 0 here, not its 0.1, so that both do the same work) on
// a padded batch B=32, T=29 with per-sequence lengths 7 + (i*5) % 23 (PyTorch: additive key
// mask in SDPA, output read at length-1). Results: a table per workload per
// thread count on stdout, a summary at the end, JSON in bench/results/latest.json. Exit status 1
// when a child process died or an output disagreed beyond 1e-4 (peers that are missing or cannot
// run are reported, not errors), so `--quick` doubles as a CI smoke test.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { freemem, tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { cpuInfo, gemmPeak, memoryBandwidth, simdFlags } from "./machine.mjs";
import { makeInput, maxAbsDiff, parseSafetensors } from "./weights.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const TOL = 1e-4;

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    workloads: { type: "string", default: "a,a-all,b2048,b4096,b16384,decode,train,train-main" },
    threads: { type: "string", default: "1,2" },
    rounds: { type: "string" },
    reps: { type: "string" },
    impls: { type: "string", default: "gqa-native,gqa-wasm,ort-node,ort-web,tfjs-wasm,pytorch" },
    "decode-lengths": { type: "string" },
    out: { type: "string", default: join(here, "results", "latest.json") },
    "no-mem-guard": { type: "boolean", default: false },
    child: { type: "boolean", default: false },
    "result-file": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (args.help) {
  const src = readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n");
  console.log(src.slice(1, src.findIndex((l) => l.startsWith("import "))).map((l) => l.replace(/^\/\/ ?/, "")).join("\n"));
  process.exit(0);
}

const QUICK = args.quick;
const ROUNDS = Number(args.rounds ?? (QUICK ? 1 : 3));
const FIXED_REPS = args.reps ? Number(args.reps) : null;
const IMPLS = new Set(args.impls.split(","));
const WORKLOADS = args.workloads.split(",").map((s) => s.trim()).filter(Boolean);
const VENV_PYTHON = join(dirname(fileURLToPath(import.meta.url)), "..", ".venv", "bin", "python");
const PYTHON = process.env.GQA_BENCH_PYTHON || (existsSync(VENV_PYTHON) ? VENV_PYTHON : "python3");

// ---------------------------------------------------------------------------------------------
// Workloads (PEERS.md). Quick mode keeps the names and shrinks every size.

const A = QUICK
  ? { B: 2, T: 8, opts: { embedDim: 12, hiddenSize: 32, numHeads: 4, numKvHeads: 2, numLayers: 2 } }
  : { B: 32, T: 60, opts: { embedDim: 287, hiddenSize: 256, numHeads: 8, numKvHeads: 2, numLayers: 4 } };
const BOPTS = QUICK
  ? { embedDim: 64, hiddenSize: 64, numHeads: 16, numKvHeads: 4, numLayers: 1 }
  : { embedDim: 512, hiddenSize: 512, numHeads: 16, numKvHeads: 4, numLayers: 1 };
const bT = (T) => (QUICK ? { 2048: 64, 4096: 128, 16384: 256, 32768: 512 }[T] : T);
// Sliding window of the w* workloads (SPEC section 7): 512 keys per query (16 in quick mode).
const WINDOW = QUICK ? 16 : 512;

const FORWARD = {
  a: { title: "(a) Edifice defaults, last_timestep", B: A.B, T: A.T, opts: { ...A.opts, outputMode: "last_timestep" } },
  "a-all": { title: "(a) Edifice defaults, outputMode all", B: A.B, T: A.T, opts: { ...A.opts, outputMode: "all" } },
  b2048: { title: "(b) long context, T=2048", B: 1, T: bT(2048), opts: { ...BOPTS, outputMode: "all" } },
  b4096: { title: "(b) long context, T=4096", B: 1, T: bT(4096), opts: { ...BOPTS, outputMode: "all" } },
  b16384: { title: "(b) long context, T=16384", B: 1, T: bT(16384), opts: { ...BOPTS, outputMode: "all" } },
  b32768: { title: "(b) long context, T=32768", B: 1, T: bT(32768), opts: { ...BOPTS, outputMode: "all" } },
  w4096: { title: `(w) sliding window ${WINDOW}, T=4096 (compare b4096: full causal)`, B: 1, T: bT(4096), opts: { ...BOPTS, outputMode: "all", slidingWindow: WINDOW } },
  w16384: { title: `(w) sliding window ${WINDOW}, T=16384 (compare b16384)`, B: 1, T: bT(16384), opts: { ...BOPTS, outputMode: "all", slidingWindow: WINDOW } },
  w32768: { title: `(w) sliding window ${WINDOW}, T=32768 (compare b32768)`, B: 1, T: bT(32768), opts: { ...BOPTS, outputMode: "all", slidingWindow: WINDOW } },
};
const DECODE = {
  title: "decode: one KV-cache push at cache length L, (b) model, batch 1",
  opts: { ...BOPTS, outputMode: "last_timestep" },
  lengths: (args["decode-lengths"] ?? (QUICK ? "32,64,128" : "2048,8192,32768")).split(",").map(Number),
};
// Training workloads: one optimisation step (AdamW lr 1e-3 wd 0.01, clip 1.0, cross-entropy on a
// `classes`-way linear head). `lengths`: per-sequence lengths [B] (padding), or null for none.
// --quick shrinks train-main to B=4, T=8 (lengths 3 + (i*5) % 6), like every other workload.
const TRAIN_MAIN = QUICK ? { B: 4, T: 8, minLen: 3 } : { B: 32, T: 29, minLen: 7 };
const TRAINS = {
  train: {
    title: "train: one optimisation step of (a), 9-class head, cross-entropy, clip 1.0, AdamW lr 1e-3 wd 0.01, dropout 0",
    B: A.B, T: A.T, opts: { ...A.opts, rope: false, outputMode: "last_timestep" }, classes: 9, lengths: null,
  },
  "train-main": {
    title: `train-main: one optimisation step of the \`npm run main\` model (rope, last_timestep), padded batch with lengths ${TRAIN_MAIN.minLen} + (i*5) % ${TRAIN_MAIN.T - TRAIN_MAIN.minLen + 1}, 9-class head, cross-entropy, clip 1.0, AdamW lr 1e-3 wd 0.01, dropout 0 (main uses 0.1)`,
    B: TRAIN_MAIN.B, T: TRAIN_MAIN.T,
    opts: { embedDim: 12, hiddenSize: 64, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, outputMode: "last_timestep" },
    classes: 9,
    lengths: Array.from({ length: TRAIN_MAIN.B }, (_, i) => TRAIN_MAIN.minLen + ((i * 5) % (TRAIN_MAIN.T - TRAIN_MAIN.minLen + 1))),
  },
};
const KNOWN = [...Object.keys(FORWARD), "decode", ...Object.keys(TRAINS)];
for (const w of WORKLOADS) if (!KNOWN.includes(w)) throw new Error(`unknown workload ${w}; known: ${KNOWN.join(", ")}`);

/**
 * PEERS.md: 2*B*T*((E != H ? E*H : 0) + L*(H*NH*D*2 + 2*H*NKV*D + 8*H*H)) + L*4*B*NH*T*K*D with
 * K = T (K = min(T, W) keys per query under a sliding window W).
 */
function forwardFlops(o, B, T) {
  const E = o.embedDim, H = o.hiddenSize, NH = o.numHeads, NKV = o.numKvHeads, L = o.numLayers, D = H / NH;
  const K = o.slidingWindow ? Math.min(T, o.slidingWindow) : T;
  return 2 * B * T * ((E !== H ? E * H : 0) + L * (H * NH * D * 2 + 2 * H * NKV * D + 8 * H * H)) + L * 4 * B * NH * T * K * D;
}
/** The same count for one new position attending to a cache of `len` positions (plus itself). */
function decodeFlops(o, len) {
  const E = o.embedDim, H = o.hiddenSize, NH = o.numHeads, NKV = o.numKvHeads, L = o.numLayers, D = H / NH;
  return 2 * ((E !== H ? E * H : 0) + L * (H * NH * D * 2 + 2 * H * NKV * D + 8 * H * H)) + L * 4 * NH * (len + 1) * D;
}
const FLOPS_TEXT = "GFLOP = [2*B*T*((E!=H ? E*H : 0) + L*(H*NH*D*2 + 2*H*NKV*D + 8*H*H)) + L*4*B*NH*T*K*D] / 1e9 (PEERS.md; K = T: full T x T, not the causal half; K = min(T, W) with a sliding window W)";

// ---------------------------------------------------------------------------------------------
// small helpers

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const log = (...m) => process.stderr.write(`${m.join(" ")}\n`);
const errText = (e) => String(e?.message ?? e).split("\n")[0].slice(0, 160);
const fmtMs = (ms) => (ms === undefined || !Number.isFinite(ms) ? "" : ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));
const fmtInt = (x) => (x === undefined || !Number.isFinite(x) ? "" : Math.round(x).toLocaleString("en-US"));
const fmtG = (x) => (x === undefined || !Number.isFinite(x) ? "" : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const fmtRatio = (x) => (x === undefined || !Number.isFinite(x) ? "" : `${x.toFixed(2)}`);
const fmtDiff = (x) => (x === undefined ? "" : Number.isNaN(x) ? "NaN" : x === 0 ? "0" : x.toExponential(1));
const fmtBytes = (b) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`);

function table(headers, rows, align) {
  const out = [`| ${headers.join(" | ")} |`, `|${headers.map((_, i) => (align[i] === "r" ? "---:" : "---")).join("|")}|`];
  for (const r of rows) out.push(`| ${r.join(" | ")} |`);
  return out.join("\n");
}

function memAvailable() {
  try {
    const m = readFileSync("/proc/meminfo", "utf8").match(/^MemAvailable:\s+(\d+) kB/m);
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return freemem();
}

// ---------------------------------------------------------------------------------------------
// parent: one child per thread count, then the summary and the JSON

async function parent() {
  const t0 = Date.now();
  const threadCounts = args.threads.split(",").map(Number);
  // If anything here runs out of memory, let the kernel pick the benchmark, not the builds
  // sharing the machine (children and the python worker inherit this).
  try { writeFileSync("/proc/self/oom_score_adj", "1000"); } catch {}
  const cpu = cpuInfo();
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).trim();
    if (execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: root, encoding: "utf8" }).trim()) commit += " (uncommitted changes)";
  } catch {}
  console.log(`# gqa bench${QUICK ? " --quick (tiny sizes: a smoke test, not figures)" : ""}`);
  console.log(`CPU: ${cpu.model ?? "unknown (no lscpu)"}, ${cpu.cpus ?? "?"} CPUs${cpu.hypervisor ? `, ${cpu.hypervisor} guest` : ""}; L2 ${cpu.l2 ?? "?"}, L3 ${cpu.l3 ?? "?"}`);
  console.log(`SIMD flags: ${simdFlags(cpu.flags).join(" ") || "(none found)"}`);
  console.log(`all flags: ${cpu.flags.join(" ")}`);
  console.log(`node ${process.version}, commit ${commit}, ${new Date().toISOString()}`);
  console.log(`workloads ${WORKLOADS.join(",")}; threads ${threadCounts.join(",")}; ${ROUNDS} round(s); ${FIXED_REPS ? `${FIXED_REPS} timed runs per round` : "timed runs per round: adaptive (3-10; 2 when one run takes > 3 s, 1 when > 10 s)"}`);
  const runs = [];
  const dir = mkdtempSync(join(tmpdir(), "gqa-bench-"));
  for (const n of threadCounts) {
    const resultFile = join(dir, `threads-${n}.json`);
    const env = {
      ...process.env,
      GQA_THREADS: String(n), RAYON_NUM_THREADS: String(n), OMP_NUM_THREADS: String(n), TORCH_THREADS: String(n),
      OPENBLAS_NUM_THREADS: String(n), MKL_NUM_THREADS: String(n),
    };
    const childArgs = [fileURLToPath(import.meta.url), "--child", "--threads", String(n), "--result-file", resultFile,
      "--workloads", WORKLOADS.join(","), "--impls", args.impls, "--rounds", String(ROUNDS), "--out", args.out];
    if (QUICK) childArgs.push("--quick");
    if (FIXED_REPS) childArgs.push("--reps", String(FIXED_REPS));
    if (args["decode-lengths"]) childArgs.push("--decode-lengths", args["decode-lengths"]);
    if (args["no-mem-guard"]) childArgs.push("--no-mem-guard");
    console.log(`\n## threads = ${n}  (GQA_THREADS=RAYON_NUM_THREADS=OMP_NUM_THREADS=TORCH_THREADS=${n})`);
    const code = await new Promise((res) => {
      const c = spawn(process.execPath, childArgs, { env, stdio: "inherit" });
      c.on("exit", (code, sig) => res(code ?? sig));
    });
    try {
      runs.push(JSON.parse(readFileSync(resultFile, "utf8")));
    } catch {
      console.log(`\n(threads ${n}: the child exited with ${code} before writing its results)`);
      runs.push({ threads: n, failed: `child exited with ${code}`, workloads: [] });
    }
  }
  rmSync(dir, { recursive: true, force: true });
  summary(runs);
  const seconds = (Date.now() - t0) / 1000;
  const result = {
    meta: { quick: QUICK, date: new Date().toISOString(), commit, node: process.version, cpu, workloads: WORKLOADS, threads: threadCounts, rounds: ROUNDS, reps: FIXED_REPS ?? "adaptive", tolerance: TOL, flops: FLOPS_TEXT, seconds },
    runs,
  };
  mkdirSync(dirname(args.out), { recursive: true });
  writeFileSync(args.out, JSON.stringify(result, null, 1) + "\n");
  console.log(`\nJSON: ${relative(process.cwd(), args.out)}; total ${seconds.toFixed(0)} s`);
  // exit 1 when a child died or an output disagreed (a peer that is missing or cannot run is not an error)
  const mismatches = runs.flatMap((r) => (r.workloads ?? []).flatMap((w) => (w.rows ?? []).filter((x) => x.status === "mismatch").map((x) => `${w.name} ${x.label} (threads ${r.threads})`)));
  if (mismatches.length) console.log(`output mismatches (> ${TOL}): ${mismatches.join("; ")}`);
  if (runs.some((r) => r.failed) || mismatches.length) process.exitCode = 1;
}

function summary(runs) {
  const ok = runs.filter((r) => !r.failed);
  if (ok.length === 0) return;
  console.log(`\n## summary: ms per forward / decode step / training step (gqa native / peer in brackets; < 1: gqa faster)`);
  const headers = ["workload", "implementation", ...ok.map((r) => `${r.threads} thr ms (gqa/peer)`)];
  const rows = [];
  for (const w of WORKLOADS) {
    const perRun = ok.map((r) => r.workloads.find((x) => x.name === w));
    const first = perRun.find(Boolean);
    if (!first) continue;
    for (const row of first.rows) {
      const key = row.key;
      const cells = perRun.map((wl) => {
        const r = wl?.rows.find((x) => x.key === key);
        if (!r) return "";
        if (r.status !== "ok") return r.status;
        return `${fmtMs(r.ms)}${r.vsNative !== undefined && key !== "gqa-native" && !key.startsWith("gqa-native@") ? ` (${fmtRatio(r.vsNative)})` : ""}`;
      });
      rows.push([w, row.label, ...cells]);
    }
  }
  console.log(table(headers, rows, ["l", "l", ...ok.map(() => "r")]));
}

// ---------------------------------------------------------------------------------------------
// child: one thread count

let GQA; // the gqa API (dist/)
const THREADS = Number(args.threads);
const ctx = { simd: {}, threads: {}, notes: [] };

async function initGqa(backend) {
  GQA.reset?.();
  try {
    await GQA.init({ backend, threads: THREADS }); // wasm: threads > 1 loads the threaded module
  } catch (e) {
    // an older API that refuses the `threads` option: the environment variables carry it
    if (!/thread/i.test(errText(e))) throw e;
    GQA.reset?.();
    await GQA.init({ backend });
  }
  // GQA.simd: {kernels, gemm} (a plain string in early builds); GQA.threads: the pool's size
  const s = GQA.simd;
  ctx.simd[`gqa-${backend}`] = typeof s === "string" ? s
    : s && typeof s === "object" ? (s.kernels === s.gemm ? s.kernels : `${s.kernels}, gemm ${s.gemm}`) : "unknown";
  ctx.threads[`gqa-${backend}`] = typeof GQA.threads === "number" ? GQA.threads : backend === "native" ? THREADS : 1;
  ctx.variant = { ...ctx.variant, [`gqa-${backend}`]: GQA.variant ?? backend };
}

/** "gqa native", "gqa wasm" (single-threaded module) or "gqa wasm (threaded)" (the threaded module). */
function gqaLabel(key) {
  return ctx.variant?.[key] === "wasm-threads" ? "gqa wasm (threaded)" : key.replace("-", " ");
}

/** A persistent PyTorch worker (bench/torch_gqa.py --serve). */
class TorchWorker {
  constructor(python) {
    this.proc = spawn(python, [join(here, "torch_gqa.py"), "--serve"], { stdio: ["pipe", "pipe", "pipe"], env: process.env });
    this.waiting = [];
    this.stderr = "";
    this.proc.stderr.on("data", (d) => { this.stderr = (this.stderr + d).slice(-4000); });
    this.proc.stdin.on("error", () => {}); // a dead worker is reported by the exit handler
    this.proc.on("error", (e) => { this.stderr += String(e.message); });
    createInterface({ input: this.proc.stdout }).on("line", (line) => this.waiting.shift()?.resolve(line));
    this.proc.on("exit", (code) => {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`pytorch worker exited (${code}): ${this.stderr.trim().split("\n").pop() ?? ""}`));
      this.dead = true;
    });
  }
  async call(req) {
    if (this.dead) throw new Error("pytorch worker is not running");
    const line = await new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.proc.stdin.write(JSON.stringify(req) + "\n");
    });
    const ans = JSON.parse(line);
    if (ans.error) throw new Error(ans.error);
    return ans;
  }
  close() {
    try { this.proc.stdin.end(); } catch {}
  }
}

function pythonHas(mods) {
  const r = spawnSync(PYTHON, ["-c", `import ${mods}`], { encoding: "utf8", timeout: 120_000 });
  if (r.error) return { ok: false, why: `${PYTHON} not found` };
  if (r.status !== 0) return { ok: false, why: (r.stderr.trim().split("\n").pop() ?? "").slice(0, 120) };
  return { ok: true };
}

/** Timed-run count for a run of `ms` (adaptive unless --reps). */
function repsFor(ms) {
  if (FIXED_REPS) return FIXED_REPS;
  if (QUICK) return 3;
  if (ms > 10000) return 1;
  if (ms > 3000) return 2;
  return Math.max(3, Math.min(10, Math.floor(1000 / Math.max(ms, 1e-3))));
}

async function timeLoop(fn, reps) {
  const ts = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return ts;
}

/**
 * Verifies each implementation against the reference output, picks its run count, then runs
 * `ROUNDS` rounds alternating between them. Fills row.{status, maxDiff, reps, roundMs, ms}.
 */
async function runRounds(impls, refKey) {
  const ref = impls.find((i) => i.key === refKey && i.row.status === "ok");
  for (const impl of impls) {
    if (impl.row.status !== "ok") continue;
    try {
      log(`    ${impl.label}: first run + check`);
      const t0 = performance.now();
      const out = await impl.output();
      const first = performance.now() - t0;
      if (ref && impl !== ref) {
        impl.row.maxDiff = maxAbsDiff(out, ref.out);
        if (!(impl.row.maxDiff <= TOL)) {
          impl.row.status = "mismatch";
          impl.row.reason = `max abs diff ${fmtDiff(impl.row.maxDiff)} vs gqa native > ${TOL}: not timed`;
          continue;
        }
      } else if (impl === ref) impl.out = out;
      let probe = first;
      if (first < 2000) {
        const t1 = performance.now();
        await impl.timeRun(1);
        probe = performance.now() - t1;
      }
      impl.row.reps = repsFor(probe);
    } catch (e) {
      impl.row.status = "failed";
      impl.row.reason = errText(e);
    }
  }
  if (ref) ref.out = undefined;
  const live = impls.filter((i) => i.row.status === "ok");
  for (const i of live) i.row.roundMs = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? [...live].reverse() : live;
    for (const impl of order) {
      if (impl.row.status !== "ok") continue;
      try {
        const ts = await impl.timeRun(impl.row.reps);
        impl.row.roundMs.push(median(ts));
      } catch (e) {
        impl.row.status = "failed";
        impl.row.reason = `round ${r + 1}: ${errText(e)}`;
      }
    }
    log(`    round ${r + 1}/${ROUNDS}: ${live.filter((i) => i.row.status === "ok").map((i) => `${i.key} ${fmtMs(i.row.roundMs.at(-1))} ms`).join(", ")}`);
  }
  for (const impl of live) if (impl.row.status === "ok") impl.row.ms = median(impl.row.roundMs);
  // gqa/peer: median over rounds of the per-round ratio
  const ratio = (gqaKey, row) => {
    const g = impls.find((i) => i.key === gqaKey && i.row.status === "ok");
    if (!g || row.status !== "ok") return undefined;
    return median(row.roundMs.map((ms, k) => g.row.roundMs[k] / ms));
  };
  for (const impl of impls) {
    impl.row.vsNative = ratio("gqa-native", impl.row);
    impl.row.vsWasm = ratio("gqa-wasm", impl.row);
  }
}

function newRow(key, label, simd, threads) {
  return { key, label, simd, threads, status: "ok" };
}

// --- forward workloads -------------------------------------------------------------------------

async function forwardWorkload(name, w, peers, machine, dir) {
  const { B, T, opts } = w;
  const dims = [B, T, opts.embedDim];
  const flops = forwardFlops(opts, B, T);
  log(`\n[${name}] ${w.title}: B=${B} T=${T} E=${opts.embedDim} H=${opts.hiddenSize} heads ${opts.numHeads}/${opts.numKvHeads} layers ${opts.numLayers}`);
  const x = makeInput(B * T * opts.embedDim, 1);
  const inputPath = join(dir, `${name}.f32`);
  writeFileSync(inputPath, Buffer.from(x.buffer, x.byteOffset, x.byteLength));

  // the weights: gqa native builds them (seed 1); everything else reads the saved bytes
  let bytes;
  {
    await initGqa("native");
    const m = await GQA.build({ ...opts, dropout: 0, seed: 1, rope: false });
    bytes = await m.save();
    m.dispose();
  }
  const modelPath = join(dir, `${name}.safetensors`);
  writeFileSync(modelPath, bytes);
  const { tensors, metadata } = parseSafetensors(bytes);
  const cfg = metadata.gqa_config ? { ...JSON.parse(metadata.gqa_config) } : { ...opts };

  const impls = [];
  const scoresBytes = B * opts.numHeads * T * T * 4;
  // The bench's own ONNX graph (bench/onnx-graph.mjs) and TensorFlow.js model are causal only;
  // PyTorch runs the twin, which reads slidingWindow from the file (SDPA with the windowed mask).
  const noWindow = opts.slidingWindow ? `not run: this peer's graph has no sliding window (causal only; PyTorch runs the windowed mask)` : null;
  const memGuard = (what, factor) => {
    const need = scoresBytes * factor;
    const avail = memAvailable();
    if (!args["no-mem-guard"] && need > 0.6 * avail) {
      return `not run: ${what} materialises [B,NH,T,T] f32 tensors (${fmtBytes(scoresBytes)} each, ~${fmtBytes(need)} at peak) > 60% of MemAvailable ${fmtBytes(avail)}`;
    }
    return null;
  };

  for (const backend of ["native", "wasm"]) {
    const key = `gqa-${backend}`;
    if (!IMPLS.has(key)) continue;
    const row = newRow(key, `gqa ${backend}`, "", backend === "native" ? THREADS : 1);
    const impl = { key, label: row.label, row };
    try {
      await initGqa(backend);
      row.simd = ctx.simd[key];
      row.threads = ctx.threads[key];
      row.label = gqaLabel(key);
      const model = await GQA.load(bytes);
      impl.output = async () => model.forwardSync(x, dims).data;
      impl.timeRun = (reps) => timeLoop(() => model.forwardSync(x, dims), reps);
      impl.dispose = () => model.dispose();
    } catch (e) {
      row.status = "failed";
      row.reason = errText(e);
    }
    impls.push(impl);
  }

  // onnxruntime (node or web) on this workload's ONNX graph: session options per package.
  async function ortImpl(impl, row, ort, options) {
    try {
      const session = await ort.InferenceSession.create(peers.onnx(cfg, tensors), options);
      const feeds = { x: new ort.Tensor("float32", x, dims) };
      impl.output = async () => (await session.run(feeds)).y.data;
      impl.timeRun = (reps) => timeLoop(() => session.run(feeds), reps);
      impl.dispose = () => session.release();
    } catch (e) {
      row.status = "failed";
      row.reason = errText(e);
    }
  }

  if (IMPLS.has("ort-node")) {
    const v = peers.ortNode?.env?.versions;
    const row = newRow("ort-node", `onnxruntime-node ${v?.node ?? v?.common ?? ""}`.trim(), "MLAS (auto)", THREADS);
    const impl = { key: "ort-node", label: row.label, row };
    impls.push(impl);
    const skip = peers.ortNodeError ?? noWindow ?? memGuard("the ONNX graph", 4);
    if (skip) {
      row.status = "failed";
      row.reason = skip;
    } else {
      await ortImpl(impl, row, peers.ortNode, {
        graphOptimizationLevel: "all", intraOpNumThreads: THREADS, interOpNumThreads: 1, executionMode: "sequential", executionProviders: ["cpu"],
      });
    }
  }

  if (IMPLS.has("ort-web")) {
    const row = newRow("ort-web", `onnxruntime-web ${peers.ortWeb?.env?.versions?.web ?? ""} (wasm)`.replace("  ", " "), "wasm simd128", THREADS);
    const impl = { key: "ort-web", label: row.label, row };
    impls.push(impl);
    const skip = peers.ortWebError ?? noWindow ?? (scoresBytes * 2 > 4 * 2 ** 30 ? `not run: the [B,NH,T,T] f32 scores (${fmtBytes(scoresBytes)}, at least two live) exceed wasm32's 4 GiB memory` : null);
    if (skip) {
      row.status = "failed";
      row.reason = skip;
    } else {
      await ortImpl(impl, row, peers.ortWeb, { graphOptimizationLevel: "all", executionProviders: ["wasm"] });
    }
  }

  if (IMPLS.has("tfjs-wasm")) {
    const info = peers.tfjsInfo;
    const row = newRow("tfjs-wasm", `TensorFlow.js ${info?.version ?? ""} wasm`, info ? (info.simd ? "wasm simd128" : "wasm scalar") : "", info?.threads ?? 1);
    const impl = { key: "tfjs-wasm", label: row.label, row };
    impls.push(impl);
    const skip = peers.tfjsError ?? noWindow ?? (scoresBytes * 2 > 4 * 2 ** 30 ? `not run: the [B,NH,T,T] f32 scores (${fmtBytes(scoresBytes)}, at least two live) exceed wasm32's 4 GiB memory` : null);
    if (skip) {
      row.status = "failed";
      row.reason = skip;
    } else {
      try {
        const m = peers.tfjs.buildTfjsModel(cfg, tensors);
        impl.output = async () => m.run(x, dims);
        impl.timeRun = (reps) => timeLoop(() => m.run(x, dims), reps);
        impl.dispose = () => m.dispose();
      } catch (e) {
        row.status = "failed";
        row.reason = errText(e);
      }
    }
  }

  if (IMPLS.has("pytorch")) {
    const row = newRow("pytorch", peers.torchInfo ? `PyTorch ${peers.torchInfo.torch}` : "PyTorch", peers.torchInfo?.cpu_capability ?? "", peers.torchInfo?.threads ?? THREADS);
    const impl = { key: "pytorch", label: row.label, row };
    impls.push(impl);
    if (!peers.torch) {
      row.status = "skipped";
      row.reason = peers.torchSkip;
    } else {
      try {
        const t = peers.torch;
        await t.call({ cmd: "load", key: name, model: modelPath });
        const outPath = join(dir, `${name}.torch.f32`);
        impl.output = async () => {
          await t.call({ cmd: "forward", key: name, input: inputPath, dims, reps: 1, out: outPath });
          const b = readFileSync(outPath);
          return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
        };
        impl.timeRun = async (reps) => (await t.call({ cmd: "forward", key: name, input: inputPath, dims, reps, out: null })).times;
        impl.dispose = () => t.call({ cmd: "free", key: name });
      } catch (e) {
        row.status = "failed";
        row.reason = errText(e);
      }
    }
  }

  await runRounds(impls, "gqa-native");
  for (const impl of impls) {
    try { await impl.dispose?.(); } catch {}
    const r = impl.row;
    if (r.status === "ok") {
      r.tokensPerS = (B * T) / (r.ms / 1e3);
      r.gflops = flops / 1e9 / (r.ms / 1e3);
      r.pctPeak = machine.gemm ? (100 * r.gflops) / machine.gemm.gflops : undefined;
    }
  }
  const rows = impls.map((i) => i.row);
  printForward(name, w, flops, rows, machine);
  return { name, title: w.title, B, T, opts, flops, rows };
}

function printForward(name, w, flops, rows, machine) {
  const { B, T, opts } = w;
  console.log(`\n### [${name}] ${w.title} · threads ${THREADS}`);
  console.log(`B=${B} T=${T} embedDim=${opts.embedDim} hiddenSize=${opts.hiddenSize} heads ${opts.numHeads}/${opts.numKvHeads} layers ${opts.numLayers} outputMode ${opts.outputMode}; ${(flops / 1e9).toFixed(3)} GFLOP per forward; GEMM peak ${machine.gemm ? `${fmtG(machine.gemm.gflops)} GFLOP/s` : "n/a"}`);
  const headers = ["implementation", "threads", "SIMD", "ms", "tokens/s", "GFLOP/s", "% peak", "max abs diff vs native", "gqa native/peer", "gqa wasm/peer", "runs"];
  const body = rows.map((r) =>
    r.status === "ok"
      ? [r.label, String(r.threads), r.simd, fmtMs(r.ms), fmtInt(r.tokensPerS), fmtG(r.gflops), r.pctPeak !== undefined ? `${r.pctPeak.toFixed(0)}%` : "", r.key === "gqa-native" ? "(reference)" : fmtDiff(r.maxDiff), r.key === "gqa-native" ? "" : fmtRatio(r.vsNative), r.key === "gqa-wasm" ? "" : fmtRatio(r.vsWasm), `${r.reps}x${r.roundMs.length}`]
      : [r.label, String(r.threads), r.simd, `**${r.status}**`, "", "", "", fmtDiff(r.maxDiff), "", "", r.reason ?? ""],
  );
  console.log(table(headers, body, ["l", "r", "l", "r", "r", "r", "r", "r", "r", "r", "l"]));
  if (T >= 1024) {
    console.log("(the count is the full T x T attention; gqa and PyTorch's SDPA skip the masked half, the ONNX graph and TensorFlow.js compute it all, so a causal kernel can show more than 100% of the GEMM peak)");
  }
  if (opts.outputMode === "last_timestep") {
    console.log("(last_timestep: gqa native and wasm compute the last block's queries, out_proj and FFN at the last position only, so their GFLOP/s on the common count above is an effective figure; the `all` workload compares the kernels like for like)");
  }
}

// --- decode ------------------------------------------------------------------------------------

async function decodeWorkload(machine) {
  const o = DECODE.opts;
  const E = o.embedDim;
  const lengths = DECODE.lengths;
  const steps = FIXED_REPS ?? (QUICK ? 3 : 10); // pushes per round, the same for every implementation
  const maxL = Math.max(...lengths);
  const pad = lengths.length * (ROUNDS * steps + 1) + 64;
  const capacity = maxL + pad;
  log(`\n[decode] ${DECODE.title}: lengths ${lengths.join(",")}`);
  await initGqa("native");
  const built = await GQA.build({ ...o, dropout: 0, seed: 1, rope: false });
  const bytes = await built.save();
  const kvPerToken = GQA.kvCacheBytesPerToken({ ...o });
  const weightBytes = GQA.paramCount(o, { exact: true }) * 4;
  built.dispose();
  const stream = makeInput(capacity * E, 3);

  const impls = [];
  for (const backend of ["native", "wasm"]) {
    const key = `gqa-${backend}`;
    if (!IMPLS.has(key)) continue;
    const row = { key, label: `gqa ${backend}`, status: "ok", threads: backend === "native" ? THREADS : 1 };
    const impl = { key, row, len: 0 };
    try {
      await initGqa(backend);
      row.simd = ctx.simd[key];
      row.threads = ctx.threads[key];
      row.label = gqaLabel(key);
      impl.model = await GQA.load(bytes);
      impl.session = await impl.model.session({ maxLen: capacity });
    } catch (e) {
      row.status = "failed";
      row.reason = errText(e);
    }
    impls.push(impl);
  }
  const push = (impl, t) => {
    const out = impl.session.pushSync(stream.subarray(impl.len * E, (impl.len + t) * E), [1, t, E]);
    impl.len += t;
    return out.data;
  };
  const results = [];
  for (const L of lengths) {
    const rows = [];
    for (const impl of impls) {
      const row = { ...impl.row, L };
      rows.push(row);
      impl.cur = row;
      if (impl.row.status !== "ok") continue;
      try {
        const t0 = performance.now();
        while (impl.len < L) impl.last = push(impl, Math.min(1024, L - impl.len));
        row.prefillMs = performance.now() - t0;
        log(`    ${impl.row.label}: prefill to ${L} (${(row.prefillMs / 1e3).toFixed(1)} s)`);
      } catch (e) {
        impl.row.status = row.status = "failed";
        impl.row.reason = row.reason = errText(e);
      }
    }
    const live = () => impls.filter((i) => i.cur.status === "ok");
    const ref = impls.find((i) => i.key === "gqa-native" && i.cur.status === "ok");
    const check = () => {
      for (const i of live()) if (ref && i !== ref) i.cur.maxDiff = Math.max(i.cur.maxDiff ?? 0, maxAbsDiff(i.last, ref.last));
    };
    check();
    for (const i of live()) i.cur.roundMs = [];
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 ? [...live()].reverse() : live();
      for (const impl of order) {
        try {
          const ts = [];
          for (let s = 0; s < steps; s++) {
            const t0 = performance.now();
            impl.last = push(impl, 1);
            ts.push(performance.now() - t0);
          }
          impl.cur.roundMs.push(median(ts));
        } catch (e) {
          impl.row.status = impl.cur.status = "failed";
          impl.cur.reason = errText(e);
        }
      }
      check();
    }
    for (const i of impls) {
      const row = i.cur;
      if (row.status !== "ok") continue;
      if (row.maxDiff !== undefined && !(row.maxDiff <= TOL)) {
        row.status = "mismatch";
        row.reason = `max abs diff ${fmtDiff(row.maxDiff)} vs gqa native`;
        continue;
      }
      row.ms = median(row.roundMs);
      row.reps = steps;
      row.tokensPerS = 1e3 / row.ms;
      row.gflops = decodeFlops(o, L) / 1e9 / (row.ms / 1e3);
      row.pctPeak = machine.gemm ? (100 * row.gflops) / machine.gemm.gflops : undefined;
      if (ref && ref.cur.status === "ok" && i !== ref) row.vsNative = median(row.roundMs.map((ms, k) => ref.cur.roundMs[k] / ms));
    }
    const kvBytes = kvPerToken * L;
    const kvMs = machine.bandwidth ? (kvBytes / (machine.bandwidth.gbs * 1e9)) * 1e3 : undefined;
    const kvwMs = machine.bandwidth ? ((kvBytes + weightBytes) / (machine.bandwidth.gbs * 1e9)) * 1e3 : undefined;
    for (const row of rows) if (row.status === "ok" && kvMs) row.vsKvRead = row.ms / kvMs;
    results.push({ L, kvBytes, weightBytes, kvReadMs: kvMs, kvWeightsReadMs: kvwMs, rows });
  }
  for (const i of impls) {
    try { i.session?.dispose(); i.model?.dispose(); } catch {}
  }
  console.log(`\n### [decode] ${DECODE.title} · threads ${THREADS}`);
  console.log(`embedDim=${o.embedDim} hiddenSize=${o.hiddenSize} heads ${o.numHeads}/${o.numKvHeads} layers ${o.numLayers}; KV cache ${kvPerToken} B/token; weights ${fmtBytes(weightBytes)}; ${steps} pushes per round; memory bandwidth ${machine.bandwidth ? `${fmtG(machine.bandwidth.gbs)} GB/s (copy of ${fmtBytes(machine.bandwidth.bytes)} on ${machine.bandwidth.threads} thread(s), read + write)` : "n/a"}`);
  console.log(`GFLOP per step = [2*((E!=H ? E*H : 0) + L*(H*NH*D*2 + 2*H*NKV*D + 8*H*H)) + L*4*NH*(len+1)*D] / 1e9; "KV read" = KV-cache bytes / bandwidth (the least a step that reads the cache once can take)`);
  const headers = ["cache length", "implementation", "threads", "SIMD", "ms / step", "tokens/s", "GFLOP/s", "% peak", "KV cache", "KV read ms", "KV+weights read ms", "step / KV read", "max abs diff vs native", "gqa native/this", "prefill s"];
  const body = [];
  for (const res of results) {
    for (const r of res.rows) {
      body.push(r.status === "ok"
        ? [String(res.L), r.label, String(r.threads), r.simd ?? "", fmtMs(r.ms), fmtInt(r.tokensPerS), fmtG(r.gflops), r.pctPeak !== undefined ? `${r.pctPeak.toFixed(1)}%` : "", fmtBytes(res.kvBytes), fmtMs(res.kvReadMs), fmtMs(res.kvWeightsReadMs), r.vsKvRead !== undefined ? `${r.vsKvRead.toFixed(1)}x` : "", r.key === "gqa-native" ? "(reference)" : fmtDiff(r.maxDiff), r.key === "gqa-native" ? "" : fmtRatio(r.vsNative), r.prefillMs !== undefined ? (r.prefillMs / 1e3).toFixed(1) : ""]
        : [String(res.L), r.label, String(r.threads), r.simd ?? "", `**${r.status}**`, "", "", "", fmtBytes(res.kvBytes), "", "", "", fmtDiff(r.maxDiff), "", r.reason ?? ""]);
    }
  }
  console.log(table(headers, body, ["r", "l", "r", "l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r"]));
  // flat rows for the summary (one per implementation and length)
  const flat = results.flatMap((res) => res.rows.map((r) => ({ ...r, key: `${r.key}@${res.L}`, label: `${r.label} L=${res.L}` })));
  return { name: "decode", title: DECODE.title, opts: o, kvBytesPerToken: kvPerToken, weightBytes, steps, lengths: results, rows: flat };
}

// --- train -------------------------------------------------------------------------------------

/** One training workload `name` of TRAINS (config `w`: B, T, opts, classes, lengths, title). */
async function trainWorkload(name, w, peers, machine, dir) {
  const { B, T, opts, classes, lengths } = w;
  const E = opts.embedDim;
  const dims = [B, T, E];
  log(`\n[${name}] ${w.title}`);
  const x = makeInput(B * T * E, 1);
  const labels = Array.from({ length: B }, (_, i) => i % classes);
  const inputPath = join(dir, `${name}.f32`);
  writeFileSync(inputPath, Buffer.from(x.buffer, x.byteOffset, x.byteLength));
  const head = { type: "classification", numClasses: classes };
  await initGqa("native");
  const built = await GQA.build({ ...opts, dropout: 0, seed: 1, head });
  const bytes = await built.save();
  built.dispose();
  const modelPath = join(dir, `${name}.safetensors`);
  writeFileSync(modelPath, bytes);
  const fitOpts = { batchSize: B, lr: 1e-3, minLr: 1e-3, warmupRatio: 0, weightDecay: 0.01, clipNorm: 1, shuffle: false, seed: 0 };
  const data = lengths ? { x, dims, labels, lengths } : { x, dims, labels };

  const impls = [];
  for (const backend of ["native", "wasm"]) {
    const key = `gqa-${backend}`;
    if (!IMPLS.has(key)) continue;
    const row = newRow(key, `gqa ${backend}`, "", backend === "native" ? THREADS : 1);
    const impl = { key, label: row.label, row };
    try {
      await initGqa(backend);
      row.simd = ctx.simd[key];
      row.threads = ctx.threads[key];
      row.label = gqaLabel(key);
      const model = await GQA.load(bytes);
      // `reps` steps: fit over `reps + 1` one-batch epochs; per-step times from the onStep
      // timestamps, the first interval (trainer creation) dropped
      impl.steps = async (reps) => {
        const stamps = [performance.now()];
        const losses = [];
        await model.fit(data, { ...fitOpts, epochs: reps + 1, onStep: (s) => { stamps.push(performance.now()); losses.push(s.loss); } });
        return { times: stamps.slice(2).map((t, k) => t - stamps[k + 1]), losses };
      };
      impl.dispose = () => model.dispose();
    } catch (e) {
      row.status = "failed";
      row.reason = errText(e);
    }
    impls.push(impl);
  }
  if (IMPLS.has("pytorch")) {
    const row = newRow("pytorch", peers.torchInfo ? `PyTorch ${peers.torchInfo.torch}` : "PyTorch", peers.torchInfo?.cpu_capability ?? "", peers.torchInfo?.threads ?? THREADS);
    const impl = { key: "pytorch", label: row.label, row };
    impls.push(impl);
    if (!peers.torch) {
      row.status = "skipped";
      row.reason = peers.torchSkip;
    } else {
      try {
        await peers.torch.call({ cmd: "train_setup", key: name, model: modelPath, input: inputPath, dims, labels, lengths, lr: 1e-3, weight_decay: 0.01, clip: 1.0 });
        impl.steps = async (reps) => peers.torch.call({ cmd: "train", key: name, reps });
        impl.dispose = () => peers.torch.call({ cmd: "free", key: name });
      } catch (e) {
        row.status = "failed";
        row.reason = errText(e);
      }
    }
  }
  // first steps of each (the same weights and batch): the loss before the first update, the run count
  for (const impl of impls) {
    if (impl.row.status !== "ok") continue;
    try {
      log(`    ${impl.label}: first steps`);
      // two warm-up steps (PyTorch's first two are several times slower: AdamW state, allocator)
      const r = await impl.steps(2);
      impl.row.firstLoss = r.losses[0];
      impl.row.reps = repsFor(r.times.at(-1));
    } catch (e) {
      impl.row.status = "failed";
      impl.row.reason = errText(e);
    }
  }
  const ref = impls.find((i) => i.key === "gqa-native" && i.row.status === "ok");
  for (const impl of impls) if (ref && impl !== ref && impl.row.firstLoss !== undefined) impl.row.lossDiff = Math.abs(impl.row.firstLoss - ref.row.firstLoss);
  const live = impls.filter((i) => i.row.status === "ok");
  for (const i of live) i.row.roundMs = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? [...live].reverse() : live;
    for (const impl of order) {
      if (impl.row.status !== "ok") continue;
      try {
        impl.row.roundMs.push(median((await impl.steps(impl.row.reps)).times));
      } catch (e) {
        impl.row.status = "failed";
        impl.row.reason = errText(e);
      }
    }
    log(`    round ${r + 1}/${ROUNDS}: ${live.filter((i) => i.row.status === "ok").map((i) => `${i.key} ${fmtMs(i.row.roundMs.at(-1))} ms`).join(", ")}`);
  }
  const flops = 3 * forwardFlops(opts, B, T);
  for (const impl of impls) {
    try { await impl.dispose?.(); } catch {}
    const row = impl.row;
    if (row.status !== "ok") continue;
    row.ms = median(row.roundMs);
    row.tokensPerS = (B * T) / (row.ms / 1e3);
    row.gflops = flops / 1e9 / (row.ms / 1e3);
    row.pctPeak = machine.gemm ? (100 * row.gflops) / machine.gemm.gflops : undefined;
    if (ref && impl !== ref && ref.row.status === "ok") row.vsNative = median(row.roundMs.map((ms, k) => ref.row.roundMs[k] / ms));
  }
  const rows = impls.map((i) => i.row);
  console.log(`\n### [${name}] ${w.title} · threads ${THREADS}`);
  const lenText = lengths ? `; lengths ${Math.min(...lengths)}..${Math.max(...lengths)} (${lengths.reduce((a, b) => a + b, 0)} of ${B * T} positions valid; tokens/s and GFLOP count all B*T)` : "";
  console.log(`B=${B} T=${T} embedDim=${E} hiddenSize=${opts.hiddenSize} heads ${opts.numHeads}/${opts.numKvHeads} layers ${opts.numLayers}${opts.rope ? " rope" : ""}${lenText}; GFLOP per step counted as 3 x the forward formula (forward + backward) = ${(flops / 1e9).toFixed(flops < 1e8 ? 4 : 2)}; reported, no target`);
  const headers = ["implementation", "threads", "SIMD", "ms / step", "tokens/s", "GFLOP/s", "% peak", "first-step loss", "abs diff vs native", "gqa native/peer", "runs"];
  const body = rows.map((r) =>
    r.status === "ok"
      ? [r.label, String(r.threads), r.simd, fmtMs(r.ms), fmtInt(r.tokensPerS), fmtG(r.gflops), r.pctPeak !== undefined ? `${r.pctPeak.toFixed(0)}%` : "", r.firstLoss?.toFixed(6) ?? "", r.key === "gqa-native" ? "(reference)" : fmtDiff(r.lossDiff), r.key === "gqa-native" ? "" : fmtRatio(r.vsNative), `${r.reps}x${r.roundMs.length}`]
      : [r.label, String(r.threads), r.simd, `**${r.status}**`, "", "", "", "", "", "", r.reason ?? ""],
  );
  console.log(table(headers, body, ["l", "r", "l", "r", "r", "r", "r", "r", "r", "r", "l"]));
  return { name, title: w.title, B, T, opts, lengths, flops, rows };
}

// --- child main --------------------------------------------------------------------------------

async function child() {
  const dir = mkdtempSync(join(tmpdir(), `gqa-bench-${THREADS}-`));
  const peers = {};
  try {
    ({ GQA } = await import("../dist/index.js"));
  } catch (e) {
    throw new Error(`cannot import dist/index.js (run \`bash scripts/setup.sh\` first): ${errText(e)}`);
  }
  const needOnnx = IMPLS.has("ort-node") || IMPLS.has("ort-web");
  if (needOnnx) {
    try {
      const { buildOnnxModel } = await import("./onnx-graph.mjs");
      peers.onnx = buildOnnxModel;
    } catch (e) {
      peers.ortNodeError = peers.ortWebError = `onnx graph builder: ${errText(e)}`;
    }
  }
  try {
    peers.ortNode = (await import("onnxruntime-node")).default;
  } catch (e) {
    peers.ortNodeError ??= `cannot load onnxruntime-node: ${errText(e)}`;
  }
  if (IMPLS.has("ort-web")) {
    try {
      peers.ortWeb = await import("onnxruntime-web");
      peers.ortWeb.env.wasm.numThreads = THREADS;
    } catch (e) {
      peers.ortWebError ??= `cannot load onnxruntime-web: ${errText(e)}`;
    }
  }
  if (IMPLS.has("tfjs-wasm")) {
    try {
      peers.tfjs = await import("./tfjs-gqa.mjs");
      peers.tfjsInfo = await peers.tfjs.initTfjs(THREADS);
      if (peers.tfjsInfo.threads !== THREADS) ctx.notes.push(`TensorFlow.js wasm runs ${peers.tfjsInfo.threads} thread(s): its multi-threaded build does not load in Node`);
    } catch (e) {
      peers.tfjsError = `cannot start TensorFlow.js wasm: ${errText(e)}`;
    }
  }
  const py = pythonHas("torch, numpy, safetensors");
  const needTorch = IMPLS.has("pytorch") && WORKLOADS.some((w) => FORWARD[w] || TRAINS[w]);
  if (needTorch) {
    if (py.ok) {
      try {
        peers.torch = new TorchWorker(PYTHON);
        peers.torchInfo = await peers.torch.call({ cmd: "info" });
      } catch (e) {
        peers.torch = null;
        peers.torchSkip = `pytorch worker failed: ${errText(e)}`;
      }
    } else {
      peers.torchSkip = `skipped: ${PYTHON} with torch, numpy and safetensors not found (${py.why}); set GQA_BENCH_PYTHON`;
    }
  }

  // the machine at this thread count
  const machine = {};
  const numpy = pythonHas("numpy");
  try {
    machine.gemm = await gemmPeak({
      python: numpy.ok ? PYTHON : null, threads: THREADS, ort: peers.ortNode,
      n: QUICK ? 512 : numpy.ok ? 4096 : 2048, reps: QUICK ? 2 : 5,
    });
  } catch (e) {
    ctx.notes.push(`GEMM peak not measured: ${errText(e)}`);
  }
  try {
    machine.bandwidth = await memoryBandwidth({ threads: THREADS, totalBytes: QUICK ? 64 * 2 ** 20 : 2 ** 30, reps: QUICK ? 3 : 7 });
  } catch (e) {
    ctx.notes.push(`memory bandwidth not measured: ${errText(e)}`);
  }
  await initGqa("native").catch((e) => ctx.notes.push(`gqa native: ${errText(e)}`));
  await initGqa("wasm").catch((e) => ctx.notes.push(`gqa wasm: ${errText(e)}`));
  console.log(`GEMM peak: ${machine.gemm ? `${fmtG(machine.gemm.gflops)} GFLOP/s (${machine.gemm.how}, ${THREADS} thread(s), best of runs)` : "not measured"}`);
  console.log(`memory bandwidth: ${machine.bandwidth ? `${fmtG(machine.bandwidth.gbs)} GB/s (read + write of a ${fmtBytes(machine.bandwidth.bytes)} copy on ${machine.bandwidth.threads} worker thread(s), best of runs)` : "not measured"}`);
  console.log(`SIMD: gqa native ${ctx.simd["gqa-native"] ?? "n/a"}, gqa wasm ${ctx.simd["gqa-wasm"] ?? "n/a"}; onnxruntime-node: MLAS picks its kernels from the CPU flags at run time; onnxruntime-web and TensorFlow.js: wasm simd128; PyTorch: ${peers.torchInfo?.cpu_capability ?? "n/a"}`);
  console.log(`PyTorch: ${peers.torchInfo ? `${peers.torchInfo.torch}, ${peers.torchInfo.threads} thread(s)` : peers.torchSkip ?? "not requested"}`);
  for (const n of ctx.notes) console.log(`note: ${n}`);

  const workloads = [];
  for (const w of WORKLOADS) {
    try {
      if (FORWARD[w]) workloads.push(await forwardWorkload(w, FORWARD[w], peers, machine, dir));
      else if (w === "decode") workloads.push(await decodeWorkload(machine));
      else if (TRAINS[w]) workloads.push(await trainWorkload(w, TRAINS[w], peers, machine, dir));
    } catch (e) {
      console.log(`\n### [${w}] threads ${THREADS}: failed: ${errText(e)}`);
      workloads.push({ name: w, failed: errText(e), rows: [] });
    }
  }
  peers.torch?.close();
  rmSync(dir, { recursive: true, force: true });
  const result = {
    threads: THREADS, machine, simd: ctx.simd, notes: ctx.notes,
    peers: { pytorch: peers.torchInfo ?? { skipped: peers.torchSkip }, tfjs: peers.tfjsInfo ?? { error: peers.tfjsError } },
    workloads,
  };
  if (args["result-file"]) writeFileSync(args["result-file"], JSON.stringify(result));
  // worker threads of onnxruntime-web keep the event loop alive
  process.exit(0);
}

if (args.child) {
  child().catch((e) => {
    console.error(`bench child (threads ${THREADS}) failed: ${e?.stack ?? e}`);
    process.exit(1);
  });
} else {
  parent().catch((e) => {
    console.error(e?.stack ?? e);
    process.exit(1);
  });
}
