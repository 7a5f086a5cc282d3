#!/usr/bin/env node
// Memory check (issue: bindings): 10,000 x (build a model, forward, dispose) must leave native RSS
// and the wasm linear memory flat. Run with `node --expose-gc scripts/leak-check.mjs native|wasm`
// (scripts/test.sh runs native and both wasm modules: GQA_THREADS=1 loads the single-threaded
// one, GQA_THREADS=2 the threaded one, whose shared memory is checked the same way). Prints the figures; exits 1 when memory grows past the bounds.
// A warm-up of the same 10,000 iterations runs first: glibc gives each libuv worker thread its own
// malloc arena, and those arenas grow to their steady size over the first ~10-15k async forwards
// (measured: 70.6 MiB at 5k, 83.8 at 10k, then 85.7-86.6 MiB from 15k to 40k). Then:
//   native: RSS after the measured 10,000 within 8 MiB of RSS after the warm-up;
//   wasm:   linear memory after the measured 10,000 equal to its size after the warm-up
//           (wasm memory never shrinks, so any leak of a freed model would show as growth).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { GQA } from "gqa";

const backend = process.argv[2] ?? "native";
const N = Number(process.env.GQA_LEAK_ITERS ?? 10_000);
const WARMUP = N;
await GQA.init({ backend });

const mib = (b) => (b / 2 ** 20).toFixed(1);
let wasmMemory = () => 0;
if (backend === "wasm") {
  // The backend imported this same module URL; initSync on an initialised module returns its exports.
  const glueUrl = new URL("gqa_wasm.js", pathToFileURL(GQA.backendFile));
  const glue = await import(glueUrl.href);
  const exports = glue.initSync({ module: readFileSync(GQA.backendFile) });
  wasmMemory = () => exports.memory.buffer.byteLength;
}

// The figures must come from the instance that does the work: a model larger than the memory now
// in use must show up in them (RSS for native; for wasm, the linear memory read above, which only
// grows if it is the backend's own instance, not a second copy of the module). Exits 1 otherwise.
{
  const read = () => (backend === "wasm" ? wasmMemory() : process.memoryUsage().rss);
  const before = read();
  // hiddenSize 1024: about 10.5M parameters (42 MB) per layer; enough layers to exceed `before`.
  const layers = Math.ceil((before + 2 ** 24) / 42e6);
  const big = await GQA.build({ embedDim: 4, hiddenSize: 1024, numHeads: 8, numKvHeads: 2, numLayers: layers, dropout: 0, seed: 1 });
  const y = await big.forward(new Float32Array(4), [1, 1, 4]);
  const after = read();
  big.dispose();
  if (y.data.length !== 1024 || !(after - before >= 32 * 2 ** 20)) {
    console.error(`leak-check ${backend}: a ${layers}-layer model (${(layers * 42).toFixed(0)} MB of weights) moved the measured memory only from ${mib(before)} to ${mib(after)} MiB: not the working instance`);
    process.exit(1);
  }
  console.log(`leak-check ${backend}: probe ok (a ${layers}-layer model moved the measured memory ${mib(before)} -> ${mib(after)} MiB)`);
}

const opts = { embedDim: 6, hiddenSize: 32, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, dropout: 0 };
const dims = [2, 12, 6];
const x = new Float32Array(2 * 12 * 6).map((_, i) => Math.sin(i));
let base = null;
const t0 = performance.now();
for (let i = 1; i <= WARMUP + N; i++) {
  const model = await GQA.build({ ...opts, seed: i });
  const y = await model.forward(x, dims, { lengths: [12, 7] });
  if (y.data.length !== 2 * 32) throw new Error(`unexpected output size ${y.data.length}`);
  model.dispose();
  if (i === WARMUP) {
    globalThis.gc?.();
    base = { rss: process.memoryUsage().rss, wasm: wasmMemory() };
  }
}
globalThis.gc?.();
const end = { rss: process.memoryUsage().rss, wasm: wasmMemory() };
const secs = ((performance.now() - t0) / 1e3).toFixed(1);
console.log(`leak-check ${GQA.variant} (${GQA.threads} thread${GQA.threads > 1 ? "s" : ""}): ${WARMUP} warm-up + ${N} measured x (build, forward, dispose) in ${secs} s; RSS ${mib(base.rss)} -> ${mib(end.rss)} MiB` +
  (backend === "wasm" ? `; wasm memory ${mib(base.wasm)} -> ${mib(end.wasm)} MiB` : ""));
const rssGrowth = end.rss - base.rss;
if (backend === "native" && rssGrowth > 8 * 2 ** 20) {
  console.error(`leak-check native: RSS grew by ${mib(rssGrowth)} MiB after warm-up (bound 8 MiB)`);
  process.exit(1);
}
if (backend === "wasm" && end.wasm !== base.wasm) {
  console.error(`leak-check wasm: linear memory grew from ${base.wasm} to ${end.wasm} bytes after warm-up`);
  process.exit(1);
}
