#!/usr/bin/env node
// `npm run bench:browser`: gqa wasm against onnxruntime-web in headless Chromium (playwright-core,
// /usr/bin/chromium), on workload (a) (B=32, T=60, E=287, H=256, 8/2 heads, 4 layers,
// last_timestep) at 1 and 2 threads: the same weights (gqa's, seed 1, as safetensors; the ONNX
// graph of bench/onnx-graph.mjs built from them) and input (bench/weights.mjs makeInput) as
// `npm run bench`. Both run in a dedicated module Web Worker of a page served with COOP/COEP
// (crossOriginIsolated: gqa loads its threaded module at 2 threads, onnxruntime-web its threaded
// build), each thread count in a fresh page: gqa `GQA.init({ threads: n })`, onnxruntime-web
// `ort.env.wasm.numThreads = n` and graph optimisation `all`. Outputs are checked against each
// other (<= 1e-4) before timing; then `--rounds` rounds (default 5) alternate the two (order
// reversed every other round), each the median of `--reps` runs (default 5); the table gives the
// median over rounds and the median of the per-round ratios. The page reports the module that ran
// (`GQA.variant`, `GQA.threads`, `crossOriginIsolated`).
//   node bench/browser.mjs [--threads 1,2] [--rounds 5] [--reps 5]
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";
import { GQA } from "gqa";
import { buildOnnxModel } from "./onnx-graph.mjs";
import { makeInput, parseSafetensors } from "./weights.mjs";
import { cpuInfo, simdFlags } from "./machine.mjs";

const { values: args } = parseArgs({
  options: { threads: { type: "string", default: "1,2" }, rounds: { type: "string", default: "5" }, reps: { type: "string", default: "5" } },
});
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const B = 32, T = 60;
const OPTS = { embedDim: 287, hiddenSize: 256, numHeads: 8, numKvHeads: 2, numLayers: 4, outputMode: "last_timestep", dropout: 0, rope: false, seed: 1 };

await GQA.init({ backend: "native" });
const m = await GQA.build(OPTS);
const weights = await m.save();
const cfg = m.config;
m.dispose();
const onnx = buildOnnxModel(cfg, parseSafetensors(weights).tensors);
const x = makeInput(B * T * OPTS.embedDim, 1);
const files = {
  "/bench-data/model.safetensors": weights,
  "/bench-data/model.onnx": onnx,
  "/bench-data/input.f32": new Uint8Array(x.buffer),
};

const WORKER = `
import { GQA } from "/dist/browser.js";
import * as ort from "/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs";
const median = (a) => { const s = [...a].sort((p, q) => p - q); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
onmessage = async ({ data: { threads, rounds, reps, dims } }) => {
  try {
    const get = async (p) => new Uint8Array(await (await fetch(p)).arrayBuffer());
    const x = new Float32Array((await get("/bench-data/input.f32")).buffer);
    await GQA.init({ backend: "wasm", threads });
    const model = await GQA.load(await get("/bench-data/model.safetensors"));
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.wasmPaths = "/node_modules/onnxruntime-web/dist/";
    const session = await ort.InferenceSession.create(await get("/bench-data/model.onnx"), { graphOptimizationLevel: "all", executionProviders: ["wasm"] });
    const feeds = { x: new ort.Tensor("float32", x, dims) };
    const impls = {
      gqa: async () => (await model.forward(x, dims)).data,
      ort: async () => (await session.run(feeds)).y.data,
    };
    const a = await impls.gqa(), b = await impls.ort();
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
    const ms = { gqa: [], ort: [] };
    const ratios = [];
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 ? ["ort", "gqa"] : ["gqa", "ort"];
      const per = {};
      for (const k of order) {
        const ts = [];
        for (let i = 0; i < reps; i++) { const t0 = performance.now(); await impls[k](); ts.push(performance.now() - t0); }
        per[k] = median(ts);
        ms[k].push(per[k]);
      }
      ratios.push(per.ort / per.gqa);
    }
    postMessage({ ok: true, isolated: self.crossOriginIsolated, variant: GQA.variant, gqaThreads: GQA.threads, simd: GQA.simd,
      ortThreads: ort.env.wasm.numThreads, ortVersion: ort.env.versions?.web, diff, length: a.length, ms, ratios,
      gqaMs: median(ms.gqa), ortMs: median(ms.ort), ratio: median(ratios) });
  } catch (e) {
    postMessage({ ok: false, error: String(e?.stack ?? e) });
  }
};`;
const PAGE = `<!doctype html><html><head><link rel="icon" href="data:,"></head><body><script type="module">
const w = new Worker("/bench-data/worker.js", { type: "module" });
window.run = (msg) => new Promise((resolve) => { w.onmessage = ({ data }) => resolve(data); w.postMessage(msg); });
window.ready = true;
</script></body></html>`;
files["/bench-data/worker.js"] = WORKER;

const TYPES = { ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };
const ISOLATION = { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" };
const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  if (path === "/") return void res.writeHead(200, { "content-type": "text/html", ...ISOLATION }).end(PAGE);
  if (files[path]) return void res.writeHead(200, { "content-type": TYPES[extname(path)] ?? "application/octet-stream", ...ISOLATION }).end(files[path]);
  const file = normalize(join(ROOT, path));
  if (!file.startsWith(ROOT) || !existsSync(file) || !statSync(file).isFile()) return void res.writeHead(404).end();
  res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", ...ISOLATION });
  createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const url = `http://127.0.0.1:${server.address().port}/`;

const cpu = cpuInfo();
console.log(`browser bench: workload (a) B=${B} T=${T} E=287 H=256 8/2 heads 4 layers last_timestep; CPU ${cpu.model ?? "?"}, ${cpu.cpus ?? "?"} CPUs, ${simdFlags(cpu.flags).join(",")}`);
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
let failed = false;
try {
  console.log(`chromium ${browser.version()}`);
  console.log("| threads | gqa module | gqa wasm ms | onnxruntime-web ms | speed (ort / gqa, median of rounds) | max abs diff |");
  console.log("|---:|---|---:|---:|---:|---:|");
  for (const threads of args.threads.split(",").map(Number)) {
    const page = await browser.newPage();
    const errors = [];
    page.on("console", (msg) => msg.type() === "error" && errors.push(msg.text()));
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url);
    await page.waitForFunction(() => window.ready);
    const r = await page.evaluate((msg) => window.run(msg), { threads, rounds: Number(args.rounds), reps: Number(args.reps), dims: [B, T, OPTS.embedDim] });
    await page.close();
    if (!r.ok) throw new Error(`threads ${threads}: ${r.error}`);
    if (r.diff > 1e-4) failed = true;
    console.log(`| ${threads} | ${r.variant} (${r.gqaThreads} thr, ${r.simd?.gemm}) | ${r.gqaMs.toFixed(1)} | ${r.ortMs.toFixed(1)} (ORT ${r.ortVersion}, numThreads ${r.ortThreads}) | **${r.ratio.toFixed(2)}x** | ${r.diff.toExponential(1)} |`);
    console.log(`  per round: gqa ${r.ms.gqa.map((v) => v.toFixed(0)).join("/")} ms, ort ${r.ms.ort.map((v) => v.toFixed(0)).join("/")} ms; crossOriginIsolated ${r.isolated}${errors.length ? `; console errors: ${errors.join(" | ")}` : ""}`);
  }
} finally {
  await browser.close();
  server.close();
}
if (failed) {
  console.error("browser bench: outputs disagree beyond 1e-4");
  process.exit(1);
}
