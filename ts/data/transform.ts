/**
 * The input transform of a `gqa train` model: the one place where raw series become the model's
 * tokens. `gqa train` (both recipes), `gqa eval`, `gqa predict`, `gqa export` and the TypeScript
 * API ({@link applyTransform} with the model file's `readCliMetadata`) all go through it.
 *
 * Three steps, in this order, on each case `[T_i * C]` (time-major, `t*C + c`):
 *
 * 1. per-channel standardisation with the training split's statistics, `(x - mean[c]) / std[c]`
 *    ({@link standardize});
 * 2. optionally, per-case instance normalisation: each channel of each case minus its own mean
 *    over the case's `T_i` steps, divided by its own population std (below `MIN_STD`: 1). This is
 *    RevIN's normalisation without its learnable affine (Kim et al., "Reversible Instance
 *    Normalization for Accurate Time-Series Forecasting against Distribution Shift", ICLR 2022);
 *    a classifier has nothing to de-normalise, so only the first half applies;
 * 3. non-overlapping patching with patch length `P` (PatchTST, Nie et al., "A Time Series is Worth
 *    64 Words", ICLR 2023, with stride = `P`): the case is zero-padded at the end to
 *    `ceil(T_i / P) * P` steps and read as `ceil(T_i / P)` tokens of `P * C` features, token `j`
 *    feature `p*C + c` = step `j*P + p`, channel `c`. In the time-major layout this is the padded
 *    array itself, reinterpreted: no copy of the order, and one Pad + Reshape in an ONNX graph.
 *    Padding comes after normalisation, so padded values are the training mean (0), and the
 *    model's `lengths` are `ceil(T_i / P)`.
 *
 * Stride = `P` rather than PatchTST's overlapping stride `P/2`: half the tokens (attention is
 * quadratic in them), and the simplest transform to export.
 */
import { channelStats, standardize, type ChannelStats } from "./standardize.js";

/** What the model's inputs went through besides the per-channel standardisation. */
export interface TransformSpec {
  /** Per-case, per-channel normalisation (step 2 above). */
  instanceNorm: boolean;
  /** Patch length `P` >= 1 (1: one token per time step, no patching). */
  patch: number;
}

/** The transform of a model trained without one: standardisation only. */
export const IDENTITY_SPEC: TransformSpec = Object.freeze({ instanceNorm: false, patch: 1 });

/** A complete input transform: the training split's per-channel statistics and the {@link TransformSpec}. */
export interface InputTransform extends TransformSpec {
  standardize: ChannelStats;
}

/** Features per token of a model on `channels` raw channels with transform `spec`: `P * C` (the model's `embedDim`). */
export function tokenWidth(channels: number, spec: TransformSpec): number {
  return channels * spec.patch;
}

/** Tokens of a case of `steps` time steps under patch length `patch`: `ceil(steps / patch)`. */
export function tokenCount(steps: number, patch: number): number {
  return Math.ceil(steps / patch);
}

/**
 * Checks a {@link TransformSpec}.
 * @throws {RangeError} naming the field, expected and found value.
 */
export function checkSpec(spec: TransformSpec): void {
  if (!Number.isInteger(spec.patch) || spec.patch < 1) throw new RangeError(`transform.patch: expected an integer >= 1, found ${spec.patch}`);
  if (typeof spec.instanceNorm !== "boolean") throw new RangeError(`transform.instanceNorm: expected a boolean, found ${String(spec.instanceNorm)}`);
}

/**
 * Per-case, per-channel instance normalisation (step 2): returns copies.
 * @param series cases, each `[T_i * C]` time-major.
 * @param channels `C`.
 */
export function instanceNormalize(series: readonly Float32Array[], channels: number): Float32Array[] {
  return series.map((s) => (s.length === 0 ? new Float32Array(0) : standardize([s], channelStats([s], channels))[0]!));
}

/**
 * Non-overlapping patches (step 3): each case `[T_i * C]` zero-padded to `ceil(T_i / P) * P`
 * steps, as `[ceil(T_i / P) * (P * C)]` (the same values; read with `P * C` channels).
 */
export function patchSeries(series: readonly Float32Array[], channels: number, patch: number): Float32Array[] {
  if (patch === 1) return series.map((s) => s);
  return series.map((s) => {
    const out = new Float32Array(tokenCount(s.length / channels, patch) * patch * channels);
    out.set(s);
    return out;
  });
}

/**
 * Applies the whole transform to raw cases: standardisation, instance normalisation when
 * `t.instanceNorm`, patching with `t.patch`.
 * @param series raw cases, each `[T_i * C]` time-major with `C = t.standardize.mean.length`.
 * @returns the model's inputs, each `[ceil(T_i / P) * P * C]` (read with {@link tokenWidth} channels).
 * @throws {RangeError} for a bad spec or a case whose length is not a multiple of `C`.
 */
export function applyTransform(series: readonly Float32Array[], t: InputTransform): Float32Array[] {
  checkSpec(t);
  const channels = t.standardize.mean.length;
  let z = standardize(series, t.standardize);
  if (t.instanceNorm) z = instanceNormalize(z, channels);
  return patchSeries(z, channels, t.patch);
}
