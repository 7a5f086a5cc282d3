/**
 * Hugging Face rotary scaling, explicit headDim and attention layers loaded from Hugging Face
 * checkpoints, through the TypeScript API on the backend chosen by GQA_BACKEND.
 * References: fixtures/hf_rope, written by scripts/gen_rope_fixtures.py with transformers and
 * torch (their rope init functions and LlamaAttention / Qwen2Attention modules), read here with
 * the independent safetensors reader of the tests.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { beforeAll, describe, expect, it } from "vitest";

import { type AttentionOptions, GQA, type GqaOptions, type HfAttentionLoadOptions, type RopeScaling } from "gqa";
import { maxAbsDiff, readSafetensors } from "./helpers/safetensors.js";
import { BACKEND, expectCode } from "./helpers/expect.js";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "hf_rope");

interface InvFreqCase {
  name: string;
  headDim: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  seqLen: number;
  invFreq: number[];
  attentionFactor: number;
}

/** The generator's output: frequency cases and the names of the module fixtures (the Rust suite reads the same list). */
const FIXTURES = JSON.parse(readFileSync(join(DIR, "inv_freq.json"), "utf8")) as { cases: InvFreqCase[]; modules: string[] };
const CASES = FIXTURES.cases;
const MODULES = FIXTURES.modules;

function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i]! - b[i]!) / b[i]!));
  return m;
}

describe(`Hugging Face rotary scaling (${BACKEND})`, () => {
  beforeAll(async () => {
    GQA.reset();
    await GQA.init();
  });

  it("inverse frequencies and attention factor match transformers' rope init functions (1e-6 relative)", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(16);
    for (const c of CASES) {
      const opts = {
        hiddenSize: 2 * c.headDim, numHeads: 2, numKvHeads: 1, headDim: c.headDim, rope: true, ropeTheta: c.ropeTheta,
        ...(c.ropeScaling && { ropeScaling: c.ropeScaling }),
      };
      const r = GQA.ropeFrequencies(opts, { seqLen: c.seqLen });
      expect(maxRel(r.invFreq, c.invFreq), c.name).toBeLessThanOrEqual(1e-6);
      expect(Math.abs(r.attentionFactor - c.attentionFactor) / c.attentionFactor, c.name).toBeLessThanOrEqual(1e-6);
      // The model's options give the same frequencies.
      const m = GQA.ropeFrequencies({ embedDim: 3, ...opts } as GqaOptions, { seqLen: c.seqLen });
      expect(Array.from(m.invFreq)).toEqual(Array.from(r.invFreq));
    }
  });

  it("the fixtures list every module the generator writes", () => {
    expect(MODULES.length).toBeGreaterThanOrEqual(8);
  });

  for (const name of MODULES) {
    it(`${name}: loadGqaAttention({hfConfig, layer}) forward equals transformers (1e-4)`, async () => {
      const meta = JSON.parse(readFileSync(join(DIR, `${name}.json`), "utf8")) as { hfConfig: Record<string, unknown>; layer: number };
      const st = readSafetensors(join(DIR, `${name}.safetensors`));
      const x = st.tensors.get("test.input")!;
      const y = st.tensors.get("test.output")!;
      const layer = await GQA.loadGqaAttention(join(DIR, `${name}.safetensors`), { hfConfig: meta.hfConfig, layer: meta.layer });
      const out = await layer.forward(x.data as Float32Array, x.shape);
      expect(out.dims).toEqual(x.shape);
      expect(maxAbsDiff(out.data, y.data), name).toBeLessThanOrEqual(1e-4);
      // The layer's options reproduce the rotary module's frequencies at this length.
      const hfInv = st.tensors.get("test.inv_freq")!.data as Float32Array;
      const af = (st.tensors.get("test.attention_scaling")!.data as Float32Array)[0]!;
      const r = GQA.ropeFrequencies(layer.config, { seqLen: x.shape[1] });
      expect(maxRel(r.invFreq, hfInv), name).toBeLessThanOrEqual(1e-6);
      expect(Math.abs(r.attentionFactor - af) / af).toBeLessThanOrEqual(1e-6);
      // Weights of q/k/v/o (+ biases, zeros where the checkpoint has none): paramCount.
      const hf = meta.hfConfig as { hidden_size: number; num_attention_heads: number; num_key_value_heads: number; head_dim?: number };
      const d = hf.head_dim ?? hf.hidden_size / hf.num_attention_heads;
      const H = hf.hidden_size, q = hf.num_attention_heads * d, kv = hf.num_key_value_heads * d;
      expect(layer.paramCount).toBe(H * q + q + 2 * (H * kv + kv) + q * H + H);
      // Saved and loaded back as a gqa file, it keeps its options and outputs.
      const again = await GQA.loadGqaAttention(await layer.save());
      expect(again.config).toEqual(layer.config);
      expect(maxAbsDiff((await again.forward(x.data as Float32Array, x.shape)).data, out.data)).toBe(0);
      layer.dispose();
      again.dispose();
    });
  }

  it("the layer index and attention_bias are honoured; errors name the key", async () => {
    const meta = JSON.parse(readFileSync(join(DIR, "llama_bias_linear.json"), "utf8")) as { hfConfig: Record<string, unknown> };
    const bytes = readSafetensors(join(DIR, "llama_bias_linear.safetensors")).bytes;
    await expectCode(() => GQA.loadGqaAttention(bytes, { hfConfig: meta.hfConfig, layer: 0 }), "MISSING_PARAMETER", /model\.layers\.0\.self_attn\./);
    await expectCode(() => GQA.loadGqaAttention(bytes, { hfConfig: meta.hfConfig, layer: 2 }), "INVALID_OPTION", /`layer`.*num_hidden_layers = 2/);
    await expectCode(() => GQA.loadGqaAttention(bytes, { hfConfig: meta.hfConfig } as unknown as HfAttentionLoadOptions), "INVALID_OPTION", /`layer`/);
    // A checkpoint without biases but a config that says attention_bias: true.
    const plain = readSafetensors(join(DIR, "llama_default.safetensors")).bytes;
    const cfg = JSON.parse(readFileSync(join(DIR, "llama_default.json"), "utf8")).hfConfig;
    await expectCode(() => GQA.loadGqaAttention(plain, { hfConfig: { ...cfg, attention_bias: true }, layer: 1 }), "MISSING_PARAMETER", /q_proj\.bias/);
    await expectCode(
      () => GQA.loadGqaAttention(plain, { hfConfig: { ...cfg, rope_scaling: { rope_type: "longrope", factor: 2 } }, layer: 1 }),
      "INVALID_OPTION",
      /`hfConfig\.rope_scaling\.rope_type`/,
    );
  });

  it("invalid rope settings give INVALID_OPTION naming the field", async () => {
    const base = { embedDim: 4, hiddenSize: 32, numHeads: 4, numKvHeads: 2 };
    const bad: [Record<string, unknown>, string][] = [
      [{ ropeScaling: { type: "ntk", factor: 2 } }, "ropeScaling.type"],
      [{ ropeScaling: { type: "linear", factor: 0 } }, "ropeScaling.factor"],
      [{ ropeScaling: { type: "dynamic", factor: -2, originalMaxPositionEmbeddings: 64 } }, "ropeScaling.factor"],
      [{ ropeScaling: { type: "yarn", factor: 4 } }, "ropeScaling.originalMaxPositionEmbeddings"],
      [{ ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4 } }, "ropeScaling.originalMaxPositionEmbeddings"],
      [{ headDim: 7, rope: true }, "headDim"],
      [{ headDim: 7, ropeScaling: { type: "linear", factor: 2 } }, "headDim"],
      [{ yarn: true, ropeScaling: { type: "linear", factor: 2 } }, "ropeScaling"],
      [{ ropeTheta: -1 }, "ropeTheta"],
    ];
    const esc = (s: string) => s.replace(/\./g, "\\.");
    for (const [o, field] of bad) {
      const re = new RegExp(`invalid option \`${esc(field)}\``);
      await expectCode(() => GQA.validate({ ...base, ...o } as GqaOptions), "INVALID_OPTION", re);
      await expectCode(() => GQA.build({ ...base, ...o } as GqaOptions), "INVALID_OPTION", re);
      const { embedDim: _e, ...attn } = base;
      await expectCode(() => GQA.buildGqaAttention({ ...attn, ...o } as unknown as AttentionOptions), "INVALID_OPTION", re);
    }
  });

  it("headDim sizes the projections: paramCount and KV-cache figures follow it", async () => {
    const o: GqaOptions = { embedDim: 32, hiddenSize: 32, numHeads: 4, numKvHeads: 2, headDim: 12, numLayers: 2, rope: true };
    const H = 32, q = 48, kv = 24, L = 2;
    expect(GQA.paramCount(o)).toBe(L * (2 * H * q + 2 * H * kv + 8 * H * H));
    const perLayer = 2 * H + (H * q + q) + 2 * (H * kv + kv) + (q * H + H) + 2 * H + (H * 4 * H + 4 * H) + (4 * H * H + H);
    expect(GQA.paramCount(o, { exact: true })).toBe(L * perLayer + 2 * H);
    expect(GQA.kvCacheBytesPerToken(o)).toBe(2 * L * 2 * 12 * 4);
    const m = await GQA.build(o);
    expect(m.paramCount).toBe(L * perLayer + 2 * H);
    expect(m.config.headDim).toBe(12);
    const a = await GQA.buildGqaAttention({ hiddenSize: 32, numHeads: 4, numKvHeads: 2, headDim: 12, ropeScaling: { type: "yarn", factor: 4, originalMaxPositionEmbeddings: 16 } });
    expect(a.paramCount).toBe(H * q + q + 2 * (H * kv + kv) + q * H + H);
    expect(a.config.ropeScaling).toEqual({ type: "yarn", factor: 4, originalMaxPositionEmbeddings: 16 });
    m.dispose();
    a.dispose();
  });
});
