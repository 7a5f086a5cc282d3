// The demo page: loads a trained model (bundled or from a file), picks a BasicMotions test
// sequence, and shows the series, the predicted class with probabilities, the attention maps of
// every head grouped by the KV head they share, and the KV-cache size per token vs the MHA and
// MQA twins. All model work happens in worker.ts (WebAssembly), so the page stays responsive.
import type { ModelConfig } from "gqa";

import { readCliMetadata, type CliMetadata } from "../../ts/model-file.js";
import { standardize } from "../../ts/data/standardize.js";
import { parseUea, type UeaDataset } from "../../ts/data/uea.js";
import { heatmap, lineChart } from "./charts.js";
import type { KvBytes, Reply, Request } from "./protocol.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const CHANNELS = ["acc x", "acc y", "acc z", "gyro x", "gyro y", "gyro z"];

/** What the page exposes for tests and curious users (`window.gqaDemo`). */
interface DemoState {
  ready: boolean;
  backend: string | null;
  /** `"wasm-threads"` (crossOriginIsolated page: threaded module) or `"wasm"`. */
  variant: string | null;
  threads: number | null;
  /** The GEMM the wasm module runs: `"relaxed-simd"` or `"simd128"`. */
  gemm: string | null;
  modelName: string;
  config: ModelConfig | null;
  kv: KvBytes | null;
  last: { caseIndex: number; input: number[]; dims: number[]; probs: number[] | null; predicted: string | null; maps: Float32Array; mapDims: number[]; ms: number; frames: number } | null;
  runs: number;
}
const state: DemoState = { ready: false, backend: null, variant: null, threads: null, gemm: null, modelName: "", config: null, kv: null, last: null, runs: 0 };
(window as unknown as { gqaDemo: DemoState }).gqaDemo = state;

let dataset: UeaDataset | null = null;
let meta: CliMetadata | null = null;

// --- worker RPC ------------------------------------------------------------------------------
const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
let nextId = 1;
const pending = new Map<number, (r: Reply) => void>();
worker.onmessage = (ev: MessageEvent<Reply>) => {
  pending.get(ev.data.id)?.(ev.data);
  pending.delete(ev.data.id);
};
worker.onerror = (ev) => fail(`worker: ${ev.message}`);
type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;
function call(req: WithoutId<Request>, transfer: Transferable[] = []): Promise<Reply> {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, (r) => (r.type === "error" ? reject(Object.assign(new Error(r.message), { code: r.code })) : resolve(r)));
    worker.postMessage({ ...req, id }, transfer);
  });
}

// --- status ------------------------------------------------------------------------------------
function status(text: string, st: "loading" | "ready" | "running" | "done" | "error"): void {
  const s = $("status");
  s.textContent = text;
  s.dataset.state = st;
}
function fail(message: string): void {
  status(message, "error");
  console.warn(message);
}

// --- animation-frame counter: proves the main thread keeps painting while the worker runs -----
let frames = 0;
const tick = () => {
  frames++;
  requestAnimationFrame(tick);
};
requestAnimationFrame(tick);

// --- model ---------------------------------------------------------------------------------------
async function loadModel(bytes: Uint8Array, name: string): Promise<void> {
  status(`loading ${name}…`, "loading");
  try {
    meta = readCliMetadata(bytes, name);
  } catch {
    meta = null; // not written by `gqa train`: no standardisation, generic class names
  }
  const r = await call({ type: "load", bytes: bytes.buffer as ArrayBuffer }, [bytes.buffer]);
  if (r.type !== "loaded") throw new Error("unexpected reply");
  if (r.config.embedDim !== dataset!.channels) {
    throw Object.assign(new Error(`${name}: embedDim ${r.config.embedDim}, but BasicMotions has ${dataset!.channels} channels`), { code: "INVALID_INPUT" });
  }
  Object.assign(state, { backend: r.backend, variant: r.variant, threads: r.threads, gemm: r.gemm, modelName: name, config: r.config, kv: r.kv, ready: true });
  const c = r.config;
  $("model-info").textContent =
    `${name}: ${r.paramCount} parameters, embedDim ${c.embedDim}, hiddenSize ${c.hiddenSize}, numHeads ${c.numHeads}, numKvHeads ${c.numKvHeads}, ` +
    `numLayers ${c.numLayers}, ${c.rope ? "RoPE" : "no RoPE"}, outputMode ${c.outputMode}; head: ${r.head ? JSON.stringify(r.head) : "none"}; ` +
    `preprocessing: ${meta ? "per-channel standardisation from the training split (gqa_cli metadata)" : "none"}; ${describeBackend(r)}`;
  renderKv(c, r.kv);
  status(`ready: ${name}, ${describeBackend(r)}`, "ready");
}

/** "wasm backend, threaded module (2 threads), relaxed-simd GEMM" and the like. */
function describeBackend(r: { backend: string; variant: string; threads: number; gemm: string }): string {
  const module = r.variant === "wasm-threads" ? `threaded module (${r.threads} threads)` : "single-threaded module";
  return `${r.backend} backend, ${module}, ${r.gemm} GEMM`;
}

function renderKv(c: ModelConfig, kv: KvBytes): void {
  const d = c.hiddenSize / c.numHeads;
  const rows: [string, number, number, string][] = [
    [`this model (GQA, ${c.numKvHeads} KV heads)`, c.numKvHeads, kv.model, ""],
    [`MHA twin (${c.numHeads} KV heads)`, c.numHeads, kv.mha, "mha"],
    [`MQA twin (1 KV head)`, 1, kv.mqa, "mqa"],
  ];
  const max = Math.max(...rows.map((r) => r[2]));
  $("kv").innerHTML =
    `<table id="kv-table"><tr><th></th><th>bytes / token</th><th></th></tr>` +
    rows.map(([label, nkv, b, cls]) => `<tr data-kv-heads="${nkv}"><td>${label}</td><td class="num">${b}</td><td style="width:40%"><div class="kv-bar ${cls}" style="width:${(100 * b) / max}%"></div></td></tr>`).join("") +
    `</table><p class="muted">2 (K and V) × ${c.numLayers} layers × NKV × headDim ${d} × 4 bytes (f32). ` +
    `GQA keeps ${((100 * kv.model) / kv.mha).toFixed(0)} % of the MHA cache: ${(kv.mha / kv.model).toFixed(1)}× smaller; ` +
    `at 4096 tokens ${(kv.model * 4096 / 1024).toFixed(0)} KiB vs ${(kv.mha * 4096 / 1024).toFixed(0)} KiB per sequence.</p>`;
}

// --- data ------------------------------------------------------------------------------------------
function caseInput(i: number): { x: Float32Array; raw: Float32Array; dims: number[] } {
  const ds = dataset!;
  const raw = ds.series[i]!;
  const x = meta ? standardize([raw], meta.standardize)[0]! : raw;
  return { x, raw, dims: [1, ds.lengths[i]!, ds.channels] };
}

function showCase(i: number): void {
  const ds = dataset!;
  const { raw, dims } = caseInput(i);
  $("series").replaceChildren(lineChart(raw, dims[1]!, ds.channels, CHANNELS.slice(0, ds.channels)));
  $("series-meta").textContent = `case ${i}: ${dims[1]} steps × ${ds.channels} channels, true class ${ds.classLabels[ds.labels[i]!]} (raw values; the model sees them standardised)`;
}

// --- run -------------------------------------------------------------------------------------------
async function run(): Promise<void> {
  const i = Number(($("case") as HTMLSelectElement).value);
  const { x, dims } = caseInput(i);
  const input = Array.from(x);
  status(`running case ${i} in the worker…`, "running");
  ($("predict") as HTMLButtonElement).disabled = true;
  const f0 = frames;
  try {
    const r = await call({ type: "run", x: Float32Array.from(x), dims });
    if (r.type !== "result") throw new Error("unexpected reply");
    const frameCount = frames - f0;
    const labels = meta?.classLabels ?? (r.probs ? Array.from(r.probs, (_, k) => `class ${k}`) : []);
    let predicted: string | null = null;
    if (r.probs) {
      const p = Array.from(r.probs);
      const best = p.indexOf(Math.max(...p));
      predicted = labels[best] ?? `class ${best}`;
      const truth = dataset!.classLabels[dataset!.labels[i]!];
      $("prediction").innerHTML =
        `<p class="pred-label">predicted <b id="predicted">${predicted}</b> <span class="muted">(true: ${truth})</span></p><table id="probs">` +
        p.map((v, k) => `<tr class="${k === best ? "best" : ""}"><td>${labels[k]}</td><td class="num" data-p="${v}">${v.toFixed(4)}</td><td style="width:45%"><div class="bar" style="width:${100 * v}%"></div></td></tr>`).join("") +
        `</table>`;
    } else {
      $("prediction").innerHTML = `<p>this model has no classification head; backbone output (${r.output.length} values): ${Array.from(r.output.slice(0, 4), (v) => v.toFixed(3)).join(", ")}…</p>`;
    }
    renderMaps(r.maps, r.mapDims);
    $("timing").textContent = `predict + forward + attention maps: ${r.ms.toFixed(1)} ms in the worker`;
    $("frames").textContent = String(frameCount);
    state.runs++;
    state.last = { caseIndex: i, input, dims, probs: r.probs ? Array.from(r.probs) : null, predicted, maps: r.maps, mapDims: r.mapDims, ms: r.ms, frames: frameCount };
    status(`done: case ${i}${predicted ? ` → ${predicted}` : ""}`, "done");
  } finally {
    ($("predict") as HTMLButtonElement).disabled = false;
  }
}

/** Maps `[L, B=1, NH, T, T]`: one row per layer, one box per KV head holding its query heads. */
function renderMaps(maps: Float32Array, dims: number[]): void {
  const [nl, , nh, t] = dims as [number, number, number, number];
  const nkv = state.config!.numKvHeads;
  const group = nh / nkv;
  const root = $("attention");
  root.replaceChildren();
  for (let l = 0; l < nl; l++) {
    const layer = document.createElement("div");
    layer.className = "layer";
    layer.innerHTML = `<h3>layer ${l}</h3>`;
    const groups = document.createElement("div");
    groups.className = "groups";
    for (let g = 0; g < nkv; g++) {
      const box = document.createElement("div");
      box.className = "group";
      box.dataset.kvHead = String(g);
      box.innerHTML = `<div>KV head ${g} · query heads ${g * group}–${(g + 1) * group - 1}</div>`;
      const heads = document.createElement("div");
      heads.className = "heads";
      for (let i = g * group; i < (g + 1) * group; i++) {
        const fig = document.createElement("figure");
        const off = (l * nh + i) * t * t;
        fig.append(heatmap(maps.subarray(off, off + t * t), t));
        const cap = document.createElement("figcaption");
        cap.textContent = `head ${i}`;
        fig.append(cap);
        heads.append(fig);
      }
      box.append(heads);
      groups.append(box);
    }
    layer.append(groups);
    root.append(layer);
  }
}

// --- start -------------------------------------------------------------------------------------------
async function fetchBytes(url: string): Promise<Uint8Array> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function start(): Promise<void> {
  const text = await (await fetch("./data/BasicMotions_TEST.ts")).text();
  dataset = parseUea(text, "BasicMotions_TEST.ts");
  const sel = $("case") as HTMLSelectElement;
  sel.innerHTML = dataset.series.map((_, i) => `<option value="${i}">#${i} · ${dataset!.classLabels[dataset!.labels[i]!]}</option>`).join("");
  sel.disabled = false;
  sel.onchange = () => showCase(Number(sel.value));
  showCase(0);
  await loadModel(await fetchBytes("./basic-motions.safetensors"), "basic-motions.safetensors");
  const btn = $("predict") as HTMLButtonElement;
  btn.disabled = false;
  btn.onclick = () => run().catch((e) => fail(`${e.code ?? "ERROR"}: ${e.message}`));
  const src = $("model-source") as HTMLSelectElement;
  const file = $("model-file") as HTMLInputElement;
  src.onchange = () => {
    if (src.value === "file") file.click();
    else fetchBytes("./basic-motions.safetensors").then((b) => loadModel(b, "basic-motions.safetensors")).catch((e) => fail(`${e.code ?? "ERROR"}: ${e.message}`));
  };
  file.onchange = async () => {
    const f = file.files?.[0];
    if (!f) return;
    try {
      await loadModel(new Uint8Array(await f.arrayBuffer()), f.name);
    } catch (e) {
      const err = e as { code?: string; message: string };
      fail(`${err.code ?? "ERROR"}: ${err.message}`);
    }
  };
}

start().catch((e) => fail(`${e.code ?? "ERROR"}: ${e.message}`));
