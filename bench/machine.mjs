// The machine's limits for `npm run bench` (PEERS.md "The machine's limits"): CPU model and flags,
// a GEMM peak (a large sgemm in the best BLAS at hand) and the memory bandwidth (a large copy in
// the same process), all at the thread count of the measuring process.
import { execFileSync, spawnSync } from "node:child_process";
import { Worker } from "node:worker_threads";

/** lscpu's model name, flags and caches (`{model, flags: string[], raw}`); nulls without lscpu. */
export function cpuInfo() {
  try {
    const raw = execFileSync("lscpu", { encoding: "utf8", env: { ...process.env, LC_ALL: "C" } });
    const field = (k) => raw.match(new RegExp(`^${k}:\\s*(.*)$`, "m"))?.[1]?.trim() ?? null;
    return {
      model: field("Model name"),
      cpus: field("CPU\\(s\\)"),
      flags: (field("Flags") ?? "").split(/\s+/).filter(Boolean),
      l2: field("L2 cache"),
      l3: field("L3 cache"),
      hypervisor: field("Hypervisor vendor"),
    };
  } catch {
    return { model: null, cpus: null, flags: [], l2: null, l3: null, hypervisor: null };
  }
}

/** The SIMD-relevant subset of the CPU flags (for the one-line summary). */
export function simdFlags(flags) {
  return flags.filter((f) => /^(sse4_2|avx|avx2|fma|f16c|avx512.*|avx_vnni|amx.*)$/.test(f));
}

const NUMPY_GEMM = `
import json, sys, time
import numpy as np
n, reps = int(sys.argv[1]), int(sys.argv[2])
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
c = a @ b
ts = []
for _ in range(reps):
    t0 = time.perf_counter(); c = a @ b; ts.append(time.perf_counter() - t0)
info = []
try:
    from threadpoolctl import threadpool_info
    info = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for d in threadpool_info() if d.get("user_api") == "blas"]
except Exception:
    pass
print(json.dumps({"times": ts, "numpy": np.__version__, "blas": info}))
`;

/**
 * GEMM peak in GFLOP/s at `threads`: numpy's BLAS (sgemm n^3, OPENBLAS_CORETYPE and
 * OPENBLAS_L2_SIZE unset for that command, kernel named by threadpoolctl when present) when
 * `python` has numpy, else an onnxruntime-node MatMul of the same size. Best of `reps` runs.
 */
export async function gemmPeak({ python, threads, n, reps, ort }) {
  if (python) {
    const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    const r = spawnSync(python, ["-c", NUMPY_GEMM, String(n), String(reps)], { env, encoding: "utf8", timeout: 600_000 });
    if (r.status === 0) {
      const j = JSON.parse(r.stdout.trim().split("\n").pop());
      const best = Math.min(...j.times);
      const blas = j.blas.map((b) => `${b.internal_api} ${b.version ?? ""} ${b.architecture ?? ""} (${b.num_threads} threads)`.replace(/\s+/g, " ")).join(", ");
      return { gflops: (2 * n ** 3) / best / 1e9, how: `numpy ${j.numpy} sgemm ${n}^3${blas ? `, ${blas}` : ""}`, n, ms: best * 1e3 };
    }
  }
  // onnxruntime-node MatMul [n,n] x [n,n]
  const a = new Float32Array(n * n);
  for (let i = 0; i < a.length; i++) a[i] = ((i * 7919) % 1000) / 1000 - 0.5;
  const { buildMatMulModel } = await import("./onnx-graph.mjs");
  const session = await ort.InferenceSession.create(buildMatMulModel(n, a), {
    graphOptimizationLevel: "all", intraOpNumThreads: threads, interOpNumThreads: 1, executionProviders: ["cpu"],
  });
  const feeds = { a: new ort.Tensor("float32", a, [n, n]) };
  await session.run(feeds);
  const ts = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    ts.push((performance.now() - t0) / 1e3);
  }
  await session.release();
  const best = Math.min(...ts);
  return { gflops: (2 * n ** 3) / best / 1e9, how: `onnxruntime-node ${ort.env.versions?.common ?? ""} MatMul ${n}^3 (no numpy in python)`, n, ms: best * 1e3 };
}

const COPY_WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const { bytes, reps, flag } = workerData;
const src = new Uint8Array(bytes), dst = new Uint8Array(bytes);
for (let i = 0; i < bytes; i += 4096) src[i] = i & 255;   // touch every page
dst.set(src);
parentPort.postMessage("ready");
const go = new Int32Array(flag);
const times = [];
for (let r = 0; r < reps; r++) {
  Atomics.wait(go, 0, r);                                 // the main thread bumps go[0] per rep
  const t0 = performance.now();
  dst.set(src);
  times.push(performance.now() - t0);
  Atomics.add(go, 1, 1);
  Atomics.notify(go, 1);
}
parentPort.postMessage(times);
`;

/**
 * Memory bandwidth: every one of `threads` worker threads copies its own `totalBytes/threads`
 * buffer (TypedArray.set, a memmove) at the same moment; bandwidth = read + write traffic =
 * 2 * totalBytes / slowest thread's time, best of `reps`.
 */
export async function memoryBandwidth({ threads, totalBytes, reps }) {
  const bytes = Math.floor(totalBytes / threads / 4096) * 4096;
  const flag = new SharedArrayBuffer(8);
  const go = new Int32Array(flag);
  const workers = [];
  const ready = [];
  const results = [];
  for (let i = 0; i < threads; i++) {
    const w = new Worker(COPY_WORKER, { eval: true, workerData: { bytes, reps, flag } });
    let first = true;
    ready.push(new Promise((res, rej) => { w.on("error", rej); w.once("message", res); }));
    results.push(new Promise((res, rej) => {
      w.on("error", rej);
      w.on("message", (m) => { if (first) first = false; else res(m); });
    }));
    workers.push(w);
  }
  await Promise.all(ready); // every worker has allocated, touched and copied its buffers once
  for (let r = 0; r < reps; r++) {
    await new Promise((res) => setTimeout(res, 20)); // let the workers reach Atomics.wait
    Atomics.store(go, 1, 0);
    Atomics.add(go, 0, 1);
    Atomics.notify(go, 0);
    while (Atomics.load(go, 1) < threads) await new Promise((res) => setTimeout(res, 1));
  }
  const all = await Promise.all(results);
  await Promise.all(workers.map((w) => w.terminate()));
  const perRep = Array.from({ length: reps }, (_, r) => Math.max(...all.map((t) => t[r])));
  const best = Math.min(...perRep);
  return { gbs: (2 * bytes * threads) / (best / 1e3) / 1e9, bytes: bytes * threads, ms: best, threads };
}
