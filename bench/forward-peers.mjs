#!/usr/bin/env node
// Forward-pass benchmark against peers, measured in the same run: gqa native (napi addon),
// gqa wasm (in Node), and PyTorch (bench/torch_gqa.py, idiomatic SDPA with enable_gqa) on the
// same weights and input. Prints median ms per forward (of --reps runs), tokens/s, the ratio
// of each to PyTorch, and the max abs difference of each output to PyTorch's.
//
//   node bench/forward-peers.mjs [--reps 7] [--cases defaults,vowels,long] [--no-wasm]
//
// Run `bash scripts/setup.sh` first. Python with torch, numpy and safetensors must be on PATH
// as python3 (scripts/requirements-fixtures.txt pins them).
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { GQA } from "gqa";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    reps: { type: "string", default: "7" },
    cases: { type: "string", default: "vowels,defaults" },
    "no-wasm": { type: "boolean", default: false },
  },
});
const reps = Number(args.reps);

// Named workloads: the main job's model, Edifice's recommended defaults, a long context.
const CASES = {
  vowels: { B: 32, T: 29, opts: { embedDim: 12, hiddenSize: 64, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true } },
  defaults: { B: 32, T: 60, opts: { embedDim: 287, hiddenSize: 256, numHeads: 8, numKvHeads: 2, numLayers: 4 } },
  long: { B: 1, T: 2048, opts: { embedDim: 512, hiddenSize: 512, numHeads: 16, numKvHeads: 4, numLayers: 4, rope: true } },
};

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function timeIt(fn) {
  fn(); // warm-up
  const ts = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

function maxAbs(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const dir = mkdtempSync(join(tmpdir(), "gqa-bench-"));
const rows = [];
for (const name of args.cases.split(",")) {
  const c = CASES[name];
  if (!c) throw new Error(`unknown case ${name}; known: ${Object.keys(CASES).join(", ")}`);
  const dims = [c.B, c.T, c.opts.embedDim];
  const x = new Float32Array(dims[0] * dims[1] * dims[2]);
  let s = 1;
  for (let i = 0; i < x.length; i++) { s = (s * 1103515245 + 12345) % 2147483648; x[i] = s / 2147483648 - 0.5; }
  const modelPath = join(dir, `${name}.safetensors`);
  const inputPath = join(dir, `${name}.f32`);
  writeFileSync(inputPath, Buffer.from(x.buffer));

  const backends = args["no-wasm"] ? ["native"] : ["native", "wasm"];
  const results = {};
  for (const backend of backends) {
    GQA.reset?.();
    await GQA.init({ backend });
    const model = await GQA.build({ ...c.opts, dropout: 0, seed: 1 });
    if (backend === "native") writeFileSync(modelPath, await model.save());
    let out;
    const ms = timeIt(() => { out = model.forwardSync(x, dims); });
    results[backend] = { ms, out: out.data };
    model.dispose();
  }
  const py = JSON.parse(execFileSync("python3", [join(here, "torch_gqa.py"), modelPath, inputPath, String(c.B), String(c.T), String(reps)], { encoding: "utf8", maxBuffer: 1 << 28 }));
  const tokens = c.B * c.T;
  rows.push({ case: name, impl: py.peer, ms: py.median_ms, tokS: tokens / (py.median_ms / 1e3), vsTorch: 1, diff: 0 });
  for (const [b, r] of Object.entries(results)) {
    rows.push({ case: name, impl: `gqa ${b}`, ms: r.ms, tokS: tokens / (r.ms / 1e3), vsTorch: py.median_ms / r.ms, diff: maxAbs(r.out, py.out) });
  }
}

console.log(`forward pass, median of ${reps} runs (speed-up = PyTorch time / this time; >1 is faster than PyTorch)`);
console.log("| case | implementation | ms / forward | tokens/s | speed-up vs PyTorch | max abs diff vs PyTorch |");
console.log("|---|---|---:|---:|---:|---:|");
for (const r of rows) {
  console.log(`| ${r.case} | ${r.impl} | ${r.ms.toFixed(2)} | ${Math.round(r.tokS)} | ${r.vsTorch.toFixed(2)}x | ${r.diff.toExponential(1)} |`);
}
