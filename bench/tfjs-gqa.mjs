// TensorFlow.js peer of `npm run bench`: the gqa model (SPEC.md section 2) written with tf ops on
// the wasm backend (@tensorflow/tfjs-backend-wasm, in Node), from the same weights.
//
// The same maths as gqa, as a tfjs user would write it: tf.matMul against the weights transposed
// once to [in, out] (see below), LayerNorm from tf.moments (biased variance, eps 1e-5), exact
// GELU 0.5*x*(1+erf(x/sqrt 2)) with tf.erf, K/V repeated to the query heads with tf.gather on the
// head axis (query head i reads KV head floor(i/group)), an additive causal mask (-1e9) and
// tf.softmax. TensorFlow.js has no GQA op and no fused attention, so the full [B, NH, T, T] score
// tensor is materialised (at long T this exceeds the wasm backend's 4 GiB memory: reported as a
// failure by the caller).
import * as tf from "@tensorflow/tfjs-core";
import * as tfwasm from "@tensorflow/tfjs-backend-wasm";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { transpose2d } from "./weights.mjs";

const require = createRequire(import.meta.url);
let ready = null;

/** Initialises the wasm backend once; returns {version, threads, simd}. */
export async function initTfjs(threads) {
  if (ready) return ready;
  // the .wasm files sit next to the package's dist/ entry
  const dist = dirname(require.resolve("@tensorflow/tfjs-backend-wasm"));
  tfwasm.setWasmPaths(join(dist, "/").replaceAll("\\", "/"));
  if (typeof tfwasm.setThreadsCount === "function") tfwasm.setThreadsCount(threads);
  await tf.setBackend("wasm");
  await tf.ready();
  const env = tf.env();
  const simd = await env.getAsync("WASM_HAS_SIMD_SUPPORT").catch(() => undefined);
  const mt = await env.getAsync("WASM_HAS_MULTITHREAD_SUPPORT").catch(() => undefined);
  const count = typeof tfwasm.getThreadsCount === "function" ? tfwasm.getThreadsCount() : null;
  ready = { version: tf.version_core, threads: mt ? count : 1, simd: !!simd, multithread: !!mt };
  return ready;
}

/** A forward-only twin of the gqa model; `run(x, [B, T, E])` returns a Float32Array. */
export function buildTfjsModel(cfg, tensors) {
  if (cfg.rope || cfg.yarn) throw new Error("tfjs peer: rotary embeddings are not in the benchmark twin (use rope: false)");
  const E = cfg.embedDim, H = cfg.hiddenSize, NH = cfg.numHeads, NKV = cfg.numKvHeads, L = cfg.numLayers;
  const D = H / NH, G = NH / NKV;
  // Linear weights are stored transposed, [in, out]: tf.matMul(x, W, false, true) against the
  // [out, in] layout is about 10x slower on the wasm backend (measured: 1920x256 by 256x1024,
  // 0.9 vs 11.7 GFLOP/s), so the twin gets the layout its fast path wants.
  const w = new Map();
  for (const [name, t] of tensors) {
    if (t.shape.length === 2) w.set(name, tf.tensor(transpose2d(t.data, t.shape[0], t.shape[1]), [t.shape[1], t.shape[0]], "float32"));
    else w.set(name, tf.tensor(t.data, t.shape, "float32"));
  }
  const get = (n) => {
    const t = w.get(n);
    if (!t) throw new Error(`tfjs peer: missing tensor ${n}`);
    return t;
  };
  const kvIndex = tf.tensor1d(Array.from({ length: NH }, (_, i) => Math.floor(i / G)), "int32");
  const masks = new Map();
  const maskFor = (T) => {
    if (!masks.has(T)) {
      const m = new Float32Array(T * T);
      for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) m[i * T + j] = -1e9;
      masks.set(T, tf.keep(tf.tensor2d(m, [T, T]))); // built inside tf.tidy: keep it for later runs
    }
    return masks.get(T);
  };
  const linear = (x2, p) => tf.add(tf.matMul(x2, get(`${p}.weight`)), get(`${p}.bias`));
  const layerNorm = (x2, p) => {
    const { mean, variance } = tf.moments(x2, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x2, mean), tf.rsqrt(tf.add(variance, 1e-5))), get(`${p}.weight`)), get(`${p}.bias`));
  };
  const scale = 1 / Math.sqrt(D);

  function forward(xt, B, T) {
    const mask = maskFor(T);
    let h = tf.reshape(xt, [B * T, E]);
    if (E !== H) h = linear(h, "input_projection");
    for (let l = 0; l < L; l++) {
      const p = `blocks.${l}`;
      const a = layerNorm(h, `${p}.attn_norm`);
      const q = tf.transpose(tf.reshape(linear(a, `${p}.attn.q_proj`), [B, T, NH, D]), [0, 2, 1, 3]);
      let k = tf.transpose(tf.reshape(linear(a, `${p}.attn.k_proj`), [B, T, NKV, D]), [0, 2, 1, 3]);
      let v = tf.transpose(tf.reshape(linear(a, `${p}.attn.v_proj`), [B, T, NKV, D]), [0, 2, 1, 3]);
      if (G > 1) {
        k = tf.gather(k, kvIndex, 1);
        v = tf.gather(v, kvIndex, 1);
      }
      const s = tf.add(tf.matMul(tf.mul(q, scale), k, false, true), mask);
      const o = tf.matMul(tf.softmax(s), v);
      const o2 = tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [B * T, H]);
      h = tf.add(h, linear(o2, `${p}.attn.out_proj`));
      const u = linear(layerNorm(h, `${p}.ffn_norm`), `${p}.ffn_up`);
      const gelu = tf.mul(tf.mul(u, tf.add(tf.erf(tf.mul(u, Math.SQRT1_2)), 1)), 0.5);
      h = tf.add(h, linear(gelu, `${p}.ffn_down`));
    }
    h = tf.reshape(layerNorm(h, "final_norm"), [B, T, H]);
    const mode = cfg.outputMode ?? "last_timestep";
    if (mode === "last_timestep") return tf.reshape(tf.slice(h, [0, T - 1, 0], [B, 1, H]), [B, H]);
    if (mode === "mean_pool") return tf.mean(h, 1);
    return h;
  }

  return {
    run(x, dims) {
      const [B, T] = dims;
      const y = tf.tidy(() => forward(tf.tensor(x, dims, "float32"), B, T));
      const out = y.dataSync();
      y.dispose();
      return out;
    },
    dispose() {
      for (const t of w.values()) t.dispose();
      for (const t of masks.values()) t.dispose();
      kvIndex.dispose();
    },
  };
}
