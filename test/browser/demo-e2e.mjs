// End-to-end test of the static demo (demo/dist, built by scripts/setup.sh) in headless chromium
// driven by playwright-core: serves demo/dist on 127.0.0.1, opens the page, runs a prediction in
// the page's Web Worker (wasm backend), and checks against Node with the NATIVE addon on the same
// model file and input:
//   - the page's model input equals Node's preprocessing of the same test case (bitwise),
//   - class probabilities and attention maps [L,1,NH,T,T] within 1e-5,
//   - the KV-cache panel shows GQA.kvCacheBytesPerToken of the model and its MHA/MQA twins,
//     which also equal 2 * L * NKV * headDim * 4,
//   - the maps are laid out by KV head (NKV boxes per layer, NH/NKV heads each),
//   - loading the model through <input type=file> gives the same result,
//   - no console error, page error or failed request,
//   - the Web Worker snippet of docs/browser-and-deno.md (gqa-worker.js + main.js, extracted, built
//     with Vite like the demo) gives the same probabilities as Node native for its zero input,
// and saves a screenshot to test-artifacts/demo.png. Usage: node test/browser/demo-e2e.mjs
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";
import { build } from "vite";

import { readCliMetadata } from "../../dist/model-file.js";
import { readUea, standardize } from "../../dist/data/index.js";
import { GQA } from "../../dist/index.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SITE = join(ROOT, "demo/dist");
const MODEL = join(ROOT, "demo/public/basic-motions.safetensors");
const ARTIFACTS = join(ROOT, "test-artifacts");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const CASE = 13;
const TOL = 1e-5;

if (!existsSync(join(SITE, "index.html"))) throw new Error(`${SITE}/index.html missing: run \`bash scripts/setup.sh\` (it builds the demo)`);

// --- a plain static file server (what any static host does) ----------------------------------
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm", ".json": "application/json", ".safetensors": "application/octet-stream", ".ts": "text/plain" };
// The README's worker snippet, built with Vite into a temporary directory, served under /readme/.
const SNIPPET_DIR = mkdtempSync(join(tmpdir(), "gqa-readme-"));
const SNIPPET_OUT = join(SNIPPET_DIR, "dist");
const server = createServer((req, res) => {
  let path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  let site = SITE;
  if (path.startsWith("/readme/")) [site, path] = [SNIPPET_OUT, path.slice("/readme".length)];
  const file = normalize(join(site, path.endsWith("/") ? path + "index.html" : path));
  if (!file.startsWith(site) || !existsSync(file) || !statSync(file).isFile()) return void res.writeHead(404).end();
  // COOP/COEP as the demo's vite dev/preview servers send them: the page is crossOriginIsolated
  // and gqa runs the threaded wasm module in the demo's worker.
  res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" });
  createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const url = `http://127.0.0.1:${server.address().port}/`;

// Extract the two blocks of docs/browser-and-deno.md, add a page and one reporting line, build with Vite (gqa -> dist/browser.js).
const readme = readFileSync(join(ROOT, "docs", "browser-and-deno.md"), "utf8");
const block = (name) => {
  const m = new RegExp(`<!-- browser-snippet:${name.replace(".", "\\.")} -->\\s*\`\`\`js\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (!m) throw new Error(`docs/browser-and-deno.md has no <!-- browser-snippet:${name} --> js block`);
  return m[1];
};
writeFileSync(join(SNIPPET_DIR, "gqa-worker.js"), block("gqa-worker.js"));
writeFileSync(join(SNIPPET_DIR, "main.js"), block("main.js") + "\nwindow.snippetResult = { probs: Array.from(probs), dims: [1, T, config.embedDim] };\n");
writeFileSync(join(SNIPPET_DIR, "index.html"), `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module" src="./main.js"></script>`);
mkdirSync(join(SNIPPET_DIR, "public"));
copyFileSync(MODEL, join(SNIPPET_DIR, "public/model.safetensors"));
await build({
  root: SNIPPET_DIR,
  base: "./",
  logLevel: "error",
  configFile: false,
  resolve: { alias: { gqa: join(ROOT, "dist/browser.js") } },
  worker: { format: "es" },
  build: { outDir: SNIPPET_OUT, target: "es2022" },
});

const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
  console.log(`${ok ? "  ok  " : "  FAIL"} ${what}`);
};
const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
let last, lastFromFile, snippet, kvShown, layout, consoleErrors = [], pageErrors = [], failedRequests = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("requestfailed", (r) => failedRequests.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on("response", (r) => r.status() >= 400 && failedRequests.push(`${r.url()}: HTTP ${r.status()}`));
  await page.goto(url);
  const waitState = async (st) => {
    await page.waitForFunction((s) => ["error", s].includes(document.getElementById("status")?.dataset.state), st, { timeout: 60_000 });
    const got = await page.$eval("#status", (e) => [e.dataset.state, e.textContent]);
    if (got[0] !== st) throw new Error(`page status ${got[0]}: ${got[1]}`);
  };
  await waitState("ready");
  await page.selectOption("#case", String(CASE));
  await page.click("#predict");
  await waitState("done");
  const grab = () =>
    page.evaluate(() => {
      const l = window.gqaDemo.last;
      return { ...l, maps: Array.from(l.maps), backend: window.gqaDemo.backend, variant: window.gqaDemo.variant, threads: window.gqaDemo.threads, config: window.gqaDemo.config };
    });
  last = await grab();
  kvShown = await page.$$eval("#kv-table tr[data-kv-heads]", (rows) => rows.map((r) => [Number(r.dataset.kvHeads), Number(r.children[1].textContent)]));
  layout = await page.evaluate(() => ({
    layers: document.querySelectorAll("#attention .layer").length,
    groups: Array.from(document.querySelectorAll("#attention .group"), (g) => [Number(g.dataset.kvHead), g.querySelectorAll("canvas").length]),
    probsRows: document.querySelectorAll("#probs tr").length,
    seriesLines: document.querySelectorAll("#series svg path").length,
    seriesLegend: document.querySelectorAll("#series .legend span").length,
    predicted: document.getElementById("predicted")?.textContent,
  }));
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, "demo.png"), fullPage: true });

  // The same model through the file input.
  await page.setInputFiles("#model-file", MODEL);
  await waitState("ready");
  await page.click("#predict");
  await waitState("done");
  lastFromFile = await grab();

  // The README snippet.
  await page.goto(url + "readme/");
  await page.waitForFunction(() => window.snippetResult, null, { timeout: 60_000 });
  snippet = await page.evaluate(() => window.snippetResult);
} finally {
  rmSync(SNIPPET_DIR, { recursive: true, force: true });
  await browser.close();
  server.close();
}

// --- Node, native addon, same model file and test case ------------------------------------------
await GQA.init({ backend: "native" });
const bytes = new Uint8Array(readFileSync(MODEL));
const meta = readCliMetadata(bytes, MODEL);
const ds = await readUea(join(ROOT, "data/BasicMotions/BasicMotions_TEST.ts"));
const x = standardize([ds.series[CASE]], meta.standardize)[0];
const dims = [1, ds.lengths[CASE], ds.channels];
const model = await GQA.load(bytes);
const probs = Array.from((await model.predict(x, dims)).data);
const maps = await model.attentionMaps(x, dims);
const cfg = model.config;
const D = cfg.hiddenSize / cfg.numHeads;

console.log(`demo e2e: chromium ${browser.version()} page backend ${last.variant} (${last.threads} threads), case ${CASE} (true ${ds.classLabels[ds.labels[CASE]]}), page -> ${last.predicted} in ${last.ms.toFixed(1)} ms (${last.frames} frames painted meanwhile)`);
check(last.backend === "wasm", `page backend is wasm (got ${last.backend})`);
check(last.variant === "wasm-threads" && last.threads > 1, `COOP/COEP page: the demo's worker runs the threaded wasm module (got ${last.variant}, ${last.threads} threads)`);
check(JSON.stringify(last.dims) === JSON.stringify(dims) && maxDiff(last.input, Array.from(x)) === 0, `page input = Node preprocessing of case ${CASE} (dims ${dims})`);
const pErr = maxDiff(last.probs, probs);
check(pErr <= TOL, `probabilities page(wasm) vs Node(native): max |diff| ${pErr.toExponential(2)} <= ${TOL} [${probs.map((p) => p.toFixed(4))}]`);
check(JSON.stringify(last.mapDims) === JSON.stringify(maps.dims), `attention map dims ${JSON.stringify(last.mapDims)} = native ${JSON.stringify(maps.dims)}`);
const mErr = maxDiff(last.maps, Array.from(maps.data));
check(mErr <= TOL, `attention maps page(wasm) vs Node(native): max |diff| ${mErr.toExponential(2)} <= ${TOL}`);
const best = probs.indexOf(Math.max(...probs));
check(layout.predicted === meta.classLabels[best] && last.predicted === meta.classLabels[best], `shown class ${layout.predicted} = argmax of native probabilities (${meta.classLabels[best]})`);
check(layout.probsRows === meta.classLabels.length, `${layout.probsRows} probability rows`);
check(layout.seriesLines === cfg.embedDim && layout.seriesLegend === cfg.embedDim, `input chart (ts/chart.ts): ${layout.seriesLines} lines and ${layout.seriesLegend} legend entries, one per channel`);
const wantGroups = [];
for (let l = 0; l < cfg.numLayers; l++) for (let g = 0; g < cfg.numKvHeads; g++) wantGroups.push([g, cfg.numHeads / cfg.numKvHeads]);
check(layout.layers === cfg.numLayers && JSON.stringify(layout.groups) === JSON.stringify(wantGroups), `maps laid out as ${cfg.numLayers} layers x ${cfg.numKvHeads} KV heads x ${cfg.numHeads / cfg.numKvHeads} query heads`);
const kvWant = [cfg.numKvHeads, cfg.numHeads, 1].map((n) => [n, GQA.kvCacheBytesPerToken({ ...cfg, numKvHeads: n })]);
const kvFormula = [cfg.numKvHeads, cfg.numHeads, 1].map((n) => [n, 2 * cfg.numLayers * n * D * 4]);
check(JSON.stringify(kvShown) === JSON.stringify(kvWant) && JSON.stringify(kvWant) === JSON.stringify(kvFormula), `KV panel ${JSON.stringify(kvShown)} = native kvCacheBytesPerToken = 2*L*NKV*D*4`);
const fErr = maxDiff(lastFromFile.probs, probs);
check(fErr <= TOL && lastFromFile.caseIndex === CASE, `model via <input type=file>: max |diff| ${fErr.toExponential(2)}`);
const zeros = await model.predict(new Float32Array(snippet.dims.reduce((a, b) => a * b)), snippet.dims);
const sErr = maxDiff(snippet.probs, Array.from(zeros.data));
check(sErr <= TOL, `README worker snippet (Vite build) vs Node native: max |diff| ${sErr.toExponential(2)} [${snippet.probs.map((p) => p.toFixed(4))}]`);
check(consoleErrors.length === 0, `no console errors${consoleErrors.length ? ": " + consoleErrors.join(" | ") : ""}`);
check(pageErrors.length === 0, `no page errors${pageErrors.length ? ": " + pageErrors.join(" | ") : ""}`);
check(failedRequests.length === 0, `no failed requests${failedRequests.length ? ": " + failedRequests.join(" | ") : ""}`);
console.log(`screenshot: ${join(ARTIFACTS, "demo.png")}`);
model.dispose();
if (failures.length) {
  console.error(`demo e2e: ${failures.length} check(s) failed`);
  process.exit(1);
}
console.log("demo e2e ok");
