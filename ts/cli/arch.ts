/**
 * Architecture arithmetic for `gqa info`, computed from the options alone (SPEC sections 1-4):
 * the parameter tensors and their shapes, FLOPs per token, KV-cache bytes per token.
 *
 * These are independent of the core: `gqa info` prints the core's `paramCount` next to the sum
 * of the table here, and the tests check that the two agree.
 */

/** Options with every value resolved (defaults filled in). */
export interface ResolvedArch {
  embedDim: number;
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  numLayers: number;
  /** Explicit per-head width (`headDim` option); `hiddenSize / numHeads` when absent. */
  headDim?: number;
}

/** One parameter tensor: canonical name (SPEC section 3), shape, element count. */
export interface ParamRow {
  name: string;
  shape: number[];
  count: number;
  /** True for weights of matrix products (counted in FLOPs); false for biases and norms. */
  matmul: boolean;
}

/** Derived sizes: `headDim` (the option, else `H/NH`), `qDim = NH*D`, `kvDim = NKV*D`, `group = NH/NKV`, FFN inner `4H`. */
export function derived(a: ResolvedArch) {
  const headDim = a.headDim ?? Math.floor(a.hiddenSize / a.numHeads);
  return {
    headDim,
    qDim: a.numHeads * headDim,
    kvDim: a.numKvHeads * headDim,
    group: a.numHeads / a.numKvHeads,
    ffnDim: 4 * a.hiddenSize,
  };
}

function linear(name: string, out: number, inp: number): ParamRow[] {
  return [
    { name: `${name}.weight`, shape: [out, inp], count: out * inp, matmul: true },
    { name: `${name}.bias`, shape: [out], count: out, matmul: false },
  ];
}

function norm(name: string, h: number): ParamRow[] {
  return [
    { name: `${name}.weight`, shape: [h], count: h, matmul: false },
    { name: `${name}.bias`, shape: [h], count: h, matmul: false },
  ];
}

/** Parameters of the input projection (empty when `embedDim == hiddenSize`). */
export function inputParams(a: ResolvedArch): ParamRow[] {
  return a.embedDim === a.hiddenSize ? [] : linear("input_projection", a.hiddenSize, a.embedDim);
}

/** Parameters of block `l` (SPEC section 3 names and `[out, in]` layouts). */
export function blockParams(a: ResolvedArch, l: number): ParamRow[] {
  const { qDim, kvDim, ffnDim } = derived(a);
  const h = a.hiddenSize;
  const p = `blocks.${l}`;
  return [
    ...norm(`${p}.attn_norm`, h),
    ...linear(`${p}.attn.q_proj`, qDim, h),
    ...linear(`${p}.attn.k_proj`, kvDim, h),
    ...linear(`${p}.attn.v_proj`, kvDim, h),
    ...linear(`${p}.attn.out_proj`, h, qDim),
    ...norm(`${p}.ffn_norm`, h),
    ...linear(`${p}.ffn_up`, ffnDim, h),
    ...linear(`${p}.ffn_down`, h, ffnDim),
  ];
}

/** Every parameter tensor of the model, in order. */
export function allParams(a: ResolvedArch): ParamRow[] {
  const rows = [...inputParams(a)];
  for (let l = 0; l < a.numLayers; l++) rows.push(...blockParams(a, l));
  rows.push(...norm("final_norm", a.hiddenSize));
  return rows;
}

/** Sum of {@link allParams} counts (should equal the core's `paramCount(opts, {exact: true})`). */
export function exactParamCount(a: ResolvedArch): number {
  return allParams(a).reduce((s, r) => s + r.count, 0);
}

/**
 * Forward FLOPs per token at sequence length `T` (a multiply-add counts 2):
 *
 * `FLOPs/token = 2 * N_matmul + numLayers * 4 * T * qDim`
 *
 * where `N_matmul` counts the weights of every matrix product (input projection, q/k/v/out
 * projections, FFN up/down; no biases, norms, softmax, GELU), and `4*T*qDim` per layer is the two
 * attention products `q k^T` and `softmax(s) v` of one query against `T` keys (`qDim = numHeads *
 * headDim`, `= hiddenSize` unless `headDim` is set), as in Hoffmann et al. 2022 (Chinchilla), appendix F. It counts all `T` keys; with the
 * causal mask a query at position `t` only uses `t+1` keys, so the average attention term is about
 * half. GQA does not change the attention FLOPs (every query head still attends), only the K/V
 * projection sizes and the KV cache.
 */
export function flopsPerToken(a: ResolvedArch, seqLen: number): { total: number; matmul: number; attention: number } {
  const nMatmul = allParams(a).filter((r) => r.matmul).reduce((s, r) => s + r.count, 0);
  const { qDim } = derived(a);
  const matmul = 2 * nMatmul;
  const attention = a.numLayers * 4 * seqLen * qDim;
  return { total: matmul + attention, matmul, attention };
}

/** KV-cache bytes per cached token, F32 (SPEC section 4): `2 * numLayers * numKvHeads * headDim * 4`. */
export function kvBytesPerToken(a: ResolvedArch, numKvHeads = a.numKvHeads): number {
  return 2 * a.numLayers * numKvHeads * derived(a).headDim * 4;
}
