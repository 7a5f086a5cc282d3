// Loads the package's browser entry (dist/browser.js -> wasm backend) in headless chromium
// (playwright-core), builds a model, runs a forward pass, and checks the result against the same
// model built in Node (bitwise-equal weights digest, outputs within 1e-5). The page is served
// twice: with `Cross-Origin-Opener-Policy: same-origin` + `Cross-Origin-Embedder-Policy:
// require-corp` it must be crossOriginIsolated and run the threaded wasm module (variant
// "wasm-threads", more than one thread, read from the page); without them it must fall back to
// the single-threaded module (Chromium validates relaxed SIMD: both are the relaxed-SIMD builds,
// GQA.simd.gemm "relaxed-simd", checked). Both runs: same digest and outputs, no console or page errors, no
// failed requests. Usage: node scripts/browser-smoke.mjs
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";
import { GQA } from "gqa";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const OPTS = { embedDim: 6, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, seed: 5 };
// Large enough that the GEMMs and attention split over the pool's threads.
const DIMS = [4, 40, 6];
const X = Array.from({ length: 4 * 40 * 6 }, (_, i) => Math.sin(i * 0.37));

const PAGE = `<!doctype html><html><head><link rel="icon" href="data:,"></head><body>pending<script type="module">
import { GQA } from "/dist/browser.js";
try {
  await GQA.init();
  const m = await GQA.build(${JSON.stringify(OPTS)});
  const y = await m.forward(new Float32Array(${JSON.stringify(X)}), ${JSON.stringify(DIMS)});
  window.result = { isolated: self.crossOriginIsolated, backend: GQA.backend, variant: GQA.variant, threads: GQA.threads, file: GQA.backendFile, gemm: GQA.simd.gemm,
    cores: navigator.hardwareConcurrency, dims: y.dims, digest: m.weightsDigest(), data: Array.from(y.data) };
} catch (e) {
  window.result = { error: (e.code ?? "") + " " + e.message };
}
</script></body></html>`;

const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".html": "text/html" };
const ISOLATION = { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" };
const server = createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const headers = url.searchParams.has("isolated") ? ISOLATION : {};
  if (url.pathname === "/") {
    res.writeHead(200, { "content-type": "text/html", ...headers }).end(PAGE);
    return;
  }
  const file = normalize(join(ROOT, decodeURIComponent(url.pathname)));
  if (!file.startsWith(ROOT) || !existsSync(file) || !statSync(file).isFile()) {
    res.writeHead(404).end();
    return;
  }
  // Subresources of an isolated page need CORP (or same-origin with COEP): send both headers always.
  res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", ...ISOLATION });
  createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const port = server.address().port;

await GQA.init();
const ref = await GQA.build(OPTS);
const want = await ref.forward(new Float32Array(X), DIMS);

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
const results = {};
try {
  for (const isolated of [true, false]) {
    const page = await browser.newPage();
    const problems = [];
    page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
    page.on("pageerror", (e) => problems.push(`page error: ${e}`));
    page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}: ${r.failure()?.errorText}`));
    page.on("response", (r) => r.status() >= 400 && problems.push(`HTTP ${r.status()}: ${r.url()}`));
    await page.goto(`http://127.0.0.1:${port}/${isolated ? "?isolated" : ""}`);
    await page.waitForFunction(() => window.result, null, { timeout: 120_000 });
    const got = await page.evaluate(() => window.result);
    await page.close();
    const name = isolated ? "COOP/COEP page" : "plain page";
    if (got.error) throw new Error(`${name}: ${got.error}`);
    if (problems.length) throw new Error(`${name}: ${problems.join(" | ")}`);
    if (got.backend !== "wasm") throw new Error(`${name}: backend ${got.backend}, expected wasm`);
    const wantVariant = isolated && got.cores > 1 ? "wasm-threads" : "wasm";
    if (got.isolated !== isolated) throw new Error(`${name}: crossOriginIsolated ${got.isolated}, expected ${isolated}`);
    if (got.variant !== wantVariant) throw new Error(`${name}: variant ${got.variant} (${got.file}), expected ${wantVariant}`);
    if (got.gemm !== "relaxed-simd") throw new Error(`${name}: GEMM ${got.gemm}, expected relaxed-simd (Chromium validates relaxed SIMD)`);
    if (wantVariant === "wasm-threads" && !(got.threads > 1)) throw new Error(`${name}: ${got.threads} thread(s) on the threaded module`);
    if (got.digest !== ref.weightsDigest()) throw new Error(`${name}: weights digest ${got.digest}, node/${GQA.backend} ${ref.weightsDigest()}`);
    if (JSON.stringify(got.dims) !== JSON.stringify(want.dims)) throw new Error(`${name}: dims ${got.dims}, node ${want.dims}`);
    const err = Math.max(...got.data.map((v, i) => Math.abs(v - want.data[i])));
    if (!(err <= 1e-5)) throw new Error(`${name}: browser vs node/${GQA.backend}: max |diff| ${err}`);
    results[name] = got;
    console.log(`browser smoke ok (${name}): chromium ${browser.version()}, crossOriginIsolated ${got.isolated}, ${got.variant} with ${got.threads} thread(s), GEMM ${got.gemm} (${got.file.replace(/^.*\/bindings\//, "")}), digest ${got.digest} = node/${GQA.backend}, max |diff| ${err.toExponential(2)}`);
  }
} finally {
  await browser.close();
  server.close();
  ref.dispose();
}
const [a, b] = Object.values(results);
if (!a.data.every((v, i) => Object.is(v, b.data[i]))) throw new Error("threaded and single-threaded pages differ (expected bitwise equal)");
console.log("browser smoke: threaded and single-threaded pages bitwise equal");
