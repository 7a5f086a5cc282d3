import { readFileSync } from "node:fs";
import { GQA } from "gqa";

// A small Qwen2-style checkpoint (yarn rope scaling) written by transformers; paths from the gqa checkout.
const { hfConfig, layer } = JSON.parse(readFileSync("fixtures/hf_rope/qwen2_bias_yarn.json", "utf8"));
const attn = await GQA.loadGqaAttention("fixtures/hf_rope/qwen2_bias_yarn.safetensors", { hfConfig, layer });
const [T, H] = [16, hfConfig.hidden_size];
const x = Float32Array.from({ length: T * H }, (_, i) => Math.cos(i));
const y = await attn.forward(x, [1, T, H]); // = transformers' Qwen2Attention of that layer, positions 0..T-1, causal
const { numHeads, numKvHeads, ropeScaling } = attn.config;
console.log(numHeads, numKvHeads, ropeScaling?.type, y.dims);
attn.dispose();
