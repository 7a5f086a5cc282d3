/**
 * Per-channel standardisation (z-scoring) of multichannel time series.
 *
 * Statistics come from the training split only, over every valid time step of every case
 * (padding is never part of the input here: series are unpadded `[T_i * C]` arrays), and are then
 * applied unchanged to the training and the test split, so no test information leaks into training.
 */

/** Per-channel statistics: `mean[c]` and `std[c]` for `c < C`. */
export interface ChannelStats {
  /** Mean of channel `c` over all time steps of all training cases. */
  mean: number[];
  /**
   * Population standard deviation (divisor = number of values, i.e. `ddof = 0`) of channel `c`.
   * A channel whose standard deviation is below `1e-8` (constant) gets `1`, so that standardising
   * only centres it instead of dividing by ~0.
   */
  std: number[];
}

/** Smallest standard deviation used as a divisor; below it `std` is set to 1 (see {@link ChannelStats.std}). */
export const MIN_STD = 1e-8;

/**
 * Computes per-channel mean and standard deviation over all time steps of `series`.
 *
 * Accumulates in float64 with a two-pass algorithm (mean first, then squared deviations), so the
 * result does not suffer from the cancellation of the one-pass `E[x^2] - E[x]^2` formula.
 *
 * @param series cases, each `[T_i * C]` time-major (`t*C + c`).
 * @param channels `C`.
 * @throws {RangeError} when `series` is empty, `channels < 1`, or a case length is not a multiple of `C`.
 */
export function channelStats(series: readonly Float32Array[], channels: number): ChannelStats {
  if (!Number.isInteger(channels) || channels < 1) throw new RangeError(`channels must be an integer >= 1, found ${channels}`);
  if (series.length === 0) throw new RangeError("channelStats needs at least one series, found 0");
  const sum = new Float64Array(channels);
  let steps = 0;
  series.forEach((s, i) => {
    if (s.length % channels !== 0 || s.length === 0) {
      throw new RangeError(`series ${i} has ${s.length} values, not a positive multiple of ${channels} channels`);
    }
    for (let j = 0; j < s.length; j++) sum[j % channels]! += s[j]!;
    steps += s.length / channels;
  });
  const mean = Array.from(sum, (v) => v / steps);
  const sq = new Float64Array(channels);
  for (const s of series) {
    for (let j = 0; j < s.length; j++) {
      const d = s[j]! - mean[j % channels]!;
      sq[j % channels]! += d * d;
    }
  }
  const std = Array.from(sq, (v) => {
    const sd = Math.sqrt(v / steps);
    return sd < MIN_STD ? 1 : sd;
  });
  return { mean, std };
}

/**
 * Returns standardised copies `(x - mean[c]) / std[c]` of `series` (the inputs are not modified).
 *
 * @param series cases, each `[T_i * C]` time-major, with `C = stats.mean.length`.
 * @throws {RangeError} when a case length is not a multiple of `C`.
 */
export function standardize(series: readonly Float32Array[], stats: ChannelStats): Float32Array[] {
  const channels = stats.mean.length;
  if (stats.std.length !== channels) throw new RangeError(`stats.std has ${stats.std.length} channels, stats.mean has ${channels}`);
  return series.map((s, i) => {
    if (s.length % channels !== 0) throw new RangeError(`series ${i} has ${s.length} values, not a multiple of ${channels} channels`);
    const out = new Float32Array(s.length);
    for (let j = 0; j < s.length; j++) {
      const c = j % channels;
      out[j] = (s[j]! - stats.mean[c]!) / stats.std[c]!;
    }
    return out;
  });
}
