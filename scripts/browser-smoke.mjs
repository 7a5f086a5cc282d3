// Loads the package's browser entry (dist/browser.js -> wasm backend) in headless chromium,
// builds a model, runs a forward pass, and checks the result against the same model built in
// Node (bitwise-equal weights digest, outputs within 1e-5). Usage: node scripts/browser-smoke.mjs
import { execFile } from "node:child_process";
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

import { GQA } from "gqa";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const OPTS = { embedDim: 6, hiddenSize: 16, numHeads: 4, numKvHeads: 2, numLayers: 2, rope: true, seed: 5 };
const DIMS = [2, 4, 6];
const X = Array.from({ length: 48 }, (_, i) => Math.sin(i * 0.37));

const PAGE = `<!doctype html><html><body>pending<script type="module">
import { GQA } from "/dist/browser.js";
try {
  await GQA.init();
  const m = await GQA.build(${JSON.stringify(OPTS)});
  const y = await m.forward(new Float32Array(${JSON.stringify(X)}), ${JSON.stringify(DIMS)});
  document.body.textContent = "RESULT " + JSON.stringify({ backend: GQA.backend, dims: y.dims, digest: m.weightsDigest(), data: Array.from(y.data) });
} catch (e) {
  document.body.textContent = "ERROR " + (e.code ?? "") + " " + e.message;
}
</script></body></html>`;

const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".html": "text/html" };
const server = createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/") {
    res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
    return;
  }
  const file = normalize(join(ROOT, decodeURIComponent(url.pathname)));
  if (!file.startsWith(ROOT) || !existsSync(file) || !statSync(file).isFile()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
  createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const port = server.address().port;

let out;
try {
  const r = await new Promise((resolve) => {
    const args = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000", "--dump-dom", `http://127.0.0.1:${port}/`];
    // Asynchronous: a synchronous spawn would block this process's HTTP server.
    execFile(CHROMIUM, args, { timeout: 120_000, maxBuffer: 1 << 24 }, (err, stdout, stderr) => resolve({ err, stdout, stderr }));
  });
  out = r.stdout ?? "";
  if (!/RESULT|ERROR/.test(out)) throw new Error(`chromium gave no result: ${r.err?.message ?? ""}\n${(r.stderr ?? "").slice(-2000)}\n${out.slice(-2000)}`);
} finally {
  server.close();
}
const m = /(RESULT|ERROR) (.*?)<\/body>/s.exec(out);
if (!m || m[1] === "ERROR") throw new Error(`browser run failed: ${m ? m[2] : out.slice(-2000)}`);
const got = JSON.parse(m[2].replace(/&quot;/g, '"').replace(/&amp;/g, "&"));

await GQA.init();
const ref = await GQA.build(OPTS);
const want = await ref.forward(new Float32Array(X), DIMS);
if (got.backend !== "wasm") throw new Error(`browser backend: expected wasm, got ${got.backend}`);
if (got.digest !== ref.weightsDigest()) throw new Error(`weights digest: browser ${got.digest}, node/${GQA.backend} ${ref.weightsDigest()}`);
if (JSON.stringify(got.dims) !== JSON.stringify(want.dims)) throw new Error(`dims: browser ${got.dims}, node ${want.dims}`);
const err = Math.max(...got.data.map((v, i) => Math.abs(v - want.data[i])));
if (!(err <= 1e-5)) throw new Error(`browser vs node/${GQA.backend}: max |diff| ${err}`);
console.log(`browser smoke ok: chromium wasm backend, digest ${got.digest} = node/${GQA.backend}, max |diff| ${err.toExponential(2)}`);
