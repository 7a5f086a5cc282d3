#!/usr/bin/env node
// Forward-pass benchmark against peers, measured in the same run: gqa native (napi addon),
// gqa wasm (in Node), and PyTorch (bench/torch_gqa.py, idiomatic SDPA with enable_gqa) on the
// same weights and input. Prints median ms per forward (of --reps runs), tokens/s, the ratio
// of each to PyTorch, and the max abs difference of each output to PyTorch's.
//
//   node bench/forward-peers.mjs [--reps 7] [--rounds 3] [--cases vowels,defaults,long] [--no-wasm]
//   (RAYON_NUM_THREADS / TORCH_THREADS set the compute threads of gqa native / PyTorch)
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
    rounds: { type: "string", default: "3" },
    cases: { type: "string", default: "vowels,defaults" },
    "no-wasm": { type: "boolean", default: false },
  },
});
const reps = Number(args.reps);
const rounds = Number(args.rounds);

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
  // Rounds of (gqa backends, then PyTorch) so that every implementation sees the same spells of
  // machine load; the table reports the median over rounds of each median time and of each ratio.
  const per = { torch: [], ...Object.fromEntries(backends.map((b) => [b, []])) };
  const ratios = Object.fromEntries(backends.map((b) => [b, []]));
  const outs = {};
  let peerName = "";
  let torchOut;
  for (let round = 0; round < rounds; round++) {
    const ms = {};
    for (const backend of backends) {
      GQA.reset?.();
      await GQA.init({ backend });
      const model = await GQA.build({ ...c.opts, dropout: 0, seed: 1 });
      if (backend === "native" && round === 0) writeFileSync(modelPath, await model.save());
      let out;
      ms[backend] = timeIt(() => { out = model.forwardSync(x, dims); });
      outs[backend] = out.data;
      model.dispose();
    }
    const py = JSON.parse(execFileSync("python3", [join(here, "torch_gqa.py"), modelPath, inputPath, String(c.B), String(c.T), String(reps)], { encoding: "utf8", maxBuffer: 1 << 28 }));
    peerName = py.peer;
    torchOut = py.out;
    per.torch.push(py.median_ms);
    for (const b of backends) {
      per[b].push(ms[b]);
      ratios[b].push(py.median_ms / ms[b]);
    }
  }
  const tokens = c.B * c.T;
  const tms = median(per.torch);
  rows.push({ case: name, impl: peerName, ms: tms, tokS: tokens / (tms / 1e3), vsTorch: 1, diff: 0 });
  for (const b of backends) {
    const m = median(per[b]);
    rows.push({ case: name, impl: `gqa ${b}`, ms: m, tokS: tokens / (m / 1e3), vsTorch: median(ratios[b]), diff: maxAbs(outs[b], torchOut) });
  }
}

console.log(`forward pass: median over ${rounds} rounds of the median of ${reps} runs (speed-up = PyTorch time / this time, median of the per-round ratios; >1 is faster than PyTorch)`);
console.log("| case | implementation | ms / forward | tokens/s | speed-up vs PyTorch | max abs diff vs PyTorch |");
console.log("|---|---|---:|---:|---:|---:|");
for (const r of rows) {
  console.log(`| ${r.case} | ${r.impl} | ${r.ms.toFixed(2)} | ${Math.round(r.tokS)} | ${r.vsTorch.toFixed(2)}x | ${r.diff.toExponential(1)} |`);
}
