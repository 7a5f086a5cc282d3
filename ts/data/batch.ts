/**
 * Padding variable-length series into one batch tensor for `model.forward(data, [B, T, C], { lengths })`.
 */

import type { TrainingData } from "../train.js";
import { mulberry32 } from "./random.js";

/** A padded batch: `data` is `[B, Tmax, C]` row-major float32, `lengths[b]` the valid steps of case `b`. */
export interface PaddedBatch {
  /** `[B * Tmax * C]`, element `(b*Tmax + t)*C + c`; steps `t >= lengths[b]` hold `padValue`. */
  data: Float32Array;
  /** `[B, Tmax, C]`. */
  dims: [number, number, number];
  /** Valid length per case, `1 <= lengths[b] <= Tmax`. */
  lengths: number[];
}

/**
 * Pads cases (left-aligned, the SPEC's padding convention) into one `[B, Tmax, C]` array.
 *
 * @param series cases, each `[T_i * C]` time-major.
 * @param channels `C`.
 * @param opts `padValue` for steps past a case's end (default 0; the model masks them, so the value
 *   must not matter); `maxLen` to force `Tmax` (default: the longest case); must be >= every `T_i`.
 * @throws {RangeError} for `C < 1`, a case that is empty or not a multiple of `C`, or `maxLen` shorter
 *   than a case.
 */
export function padBatch(
  series: readonly Float32Array[],
  channels: number,
  opts: { padValue?: number; maxLen?: number } = {},
): PaddedBatch {
  if (!Number.isInteger(channels) || channels < 1) throw new RangeError(`channels must be an integer >= 1, found ${channels}`);
  const lengths = series.map((s, i) => {
    if (s.length === 0 || s.length % channels !== 0) {
      throw new RangeError(`series ${i} has ${s.length} values, not a positive multiple of ${channels} channels`);
    }
    return s.length / channels;
  });
  const longest = lengths.reduce((a, b) => Math.max(a, b), 0);
  const tmax = opts.maxLen ?? longest;
  if (tmax < longest) throw new RangeError(`maxLen ${tmax} is shorter than the longest series (${longest} steps)`);
  const b = series.length;
  const data = new Float32Array(b * tmax * channels);
  const pad = opts.padValue ?? 0;
  if (pad !== 0) data.fill(pad);
  series.forEach((s, i) => {
    data.set(s, i * tmax * channels);
  });
  return { data, dims: [b, tmax, channels], lengths };
}

/**
 * Splits `0..n-1` into consecutive batches of at most `batchSize` indices, optionally shuffled
 * by a seeded generator (mulberry32) so that an epoch order is reproducible.
 *
 * @throws {RangeError} when `batchSize < 1`.
 */
export function batchIndices(n: number, batchSize: number, shuffleSeed?: number): number[][] {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be an integer >= 1, found ${batchSize}`);
  const idx = Array.from({ length: n }, (_, i) => i);
  if (shuffleSeed !== undefined) {
    const rand = mulberry32(shuffleSeed);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
  }
  const out: number[][] = [];
  for (let i = 0; i < n; i += batchSize) out.push(idx.slice(i, i + batchSize));
  return out;
}

/**
 * Cases and their labels as the {@link TrainingData} that `model.fit` and `model.evaluate` take:
 * `x` `[N, Tmax, C]` float32, zero-padded past each case's length ({@link padBatch}), `dims`,
 * `lengths` and the labels as given.
 *
 * @param series cases, each `[T_i * C]` time-major (standardise them first: {@link standardize}).
 * @param channels `C`.
 * @param labels one per case: a class index (classification head) or the `K` targets of a
 *   regression head.
 * @throws {RangeError} as {@link padBatch}, or when `labels` does not hold one entry per case.
 */
export function trainingData(series: readonly Float32Array[], channels: number, labels: readonly number[] | readonly (readonly number[])[]): TrainingData & { dims: [number, number, number]; lengths: number[] } {
  if (labels.length !== series.length) throw new RangeError(`labels has ${labels.length} entries for ${series.length} cases`);
  const b = padBatch(series, channels);
  return { x: b.data, dims: b.dims, lengths: b.lengths, labels: labels.map((l) => (Array.isArray(l) ? [...l] : l)) as number[] | number[][] };
}
