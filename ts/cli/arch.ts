/**
 * Architecture arithmetic for `gqa info` (SPEC sections 1-4): FLOPs per token and KV-cache bytes
 * per token. The parameter tensors and their shapes are the core's parameter table
 * (`GQA.parameterLayout`, the one the model and weight loading use); `gqa info` prints the
 * core's `paramCount` next to the table's sum, and the CLI tests check both against counts
 * computed by hand from the SPEC layout.
 */
import type { ParamSpec } from "../gqa.js";

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

/** One parameter tensor of the core's table, with its element count. */
export interface ParamRow extends ParamSpec {
  count: number;
}

/** The table's rows with their element counts. */
export function withCounts(specs: ParamSpec[]): ParamRow[] {
  return specs.map((s) => ({ ...s, count: s.shape.reduce((a, d) => a * d, 1) }));
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

/** Sum of the rows' element counts (equals the core's `paramCount(opts, {exact: true})`). */
export function exactParamCount(rows: ParamRow[]): number {
  return rows.reduce((s, r) => s + r.count, 0);
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
export function flopsPerToken(a: ResolvedArch, rows: ParamRow[], seqLen: number): { total: number; matmul: number; attention: number } {
  const nMatmul = rows.filter((r) => r.matmul).reduce((s, r) => s + r.count, 0);
  const { qDim } = derived(a);
  const matmul = 2 * nMatmul;
  const attention = a.numLayers * 4 * seqLen * qDim;
  return { total: matmul + attention, matmul, attention };
}

/** KV-cache bytes per cached token, F32 (SPEC section 4): `2 * numLayers * numKvHeads * headDim * 4`. */
export function kvBytesPerToken(a: ResolvedArch, numKvHeads = a.numKvHeads): number {
  return 2 * a.numLayers * numKvHeads * derived(a).headDim * 4;
}
