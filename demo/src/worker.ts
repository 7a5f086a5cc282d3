// The model runs here, off the page's main thread: GQA (wasm backend; the threaded module with a
// pool of Web Workers when the page is crossOriginIsolated, see vite.config.ts) loads the safetensors
// bytes, then each "run" computes the head's class probabilities (model.predict), the backbone
// output (model.forward) and the attention maps of every layer and head (model.attentionMaps).
import { GQA, type Model } from "gqa";

import type { Reply, Request } from "./protocol.js";

let model: Model | null = null;

function post(reply: Reply, transfer: Transferable[] = []): void {
  (self as unknown as Worker).postMessage(reply, transfer);
}

self.onmessage = async (ev: MessageEvent<Request>) => {
  const msg = ev.data;
  try {
    if (msg.type === "load") {
      await GQA.init({ backend: "wasm" });
      const next = await GQA.load(new Uint8Array(msg.bytes));
      model?.dispose();
      model = next;
      const config = model.config;
      const kv = (numKvHeads: number) => GQA.kvCacheBytesPerToken({ ...config, numKvHeads });
      post({ id: msg.id, type: "loaded", backend: GQA.backend ?? "?", variant: GQA.variant ?? "?", threads: GQA.threads ?? 1, gemm: GQA.simd?.gemm ?? "?", config, head: model.head, paramCount: model.paramCount, kv: { model: kv(config.numKvHeads), mha: kv(config.numHeads), mqa: kv(1) } });
    } else {
      if (!model) throw Object.assign(new Error("no model loaded"), { code: "NOT_INITIALIZED" });
      const t0 = performance.now();
      const probs = model.head ? (await model.predict(msg.x, msg.dims)).data : null;
      const output = (await model.forward(msg.x, msg.dims)).data;
      const maps = await model.attentionMaps(msg.x, msg.dims);
      const ms = performance.now() - t0;
      const transfer = [output.buffer, maps.data.buffer, ...(probs ? [probs.buffer] : [])] as ArrayBuffer[];
      post({ id: msg.id, type: "result", probs, output, maps: maps.data, mapDims: maps.dims, ms }, transfer);
    }
  } catch (e) {
    const err = e as { code?: string; message?: string };
    post({ id: msg.id, type: "error", code: err.code ?? "ERROR", message: err.message ?? String(e) });
  }
};
