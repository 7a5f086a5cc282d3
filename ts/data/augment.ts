/**
 * Training-set augmentation for multichannel time series: seeded, static copies of the training
 * cases (made once before training, so the core's trainer sees one fixed, larger dataset and a
 * run stays deterministic for its seed).
 *
 * Each copy of a standardised case `[T * C]` (time-major) gets, in this order:
 * - scaling: every channel multiplied by its own factor `1 + scale * N(0, 1)` (Um et al. 2017,
 *   "Data augmentation of wearable sensor data ...", ICMI; "scaling");
 * - jitter: `jitter * N(0, 1)` added to every value (Um et al. 2017, "jittering");
 * - time masking: one span of `floor(u * timeMask * T)` consecutive steps (`u ~ U[0, 1)`, at a
 *   uniform start) set to 0, i.e. to the channel mean after standardisation (Park et al. 2019,
 *   SpecAugment, "time masking"); never the whole series.
 * The length of every case is kept. Normal variates: Box-Muller on a mulberry32 stream.
 */

import { mulberry32 } from "./random.js";

/** Augmentation settings (all optional; 0 or absent turns a transform off). */
export interface AugmentOptions {
  /** Augmented copies per case, added after the originals (integer >= 0; 0 = no augmentation). */
  copies: number;
  /** Standard deviation of the additive Gaussian noise, in standardised units (>= 0). */
  jitter?: number;
  /** Standard deviation of the per-channel scale factor around 1 (>= 0). */
  scale?: number;
  /** Largest masked fraction of the steps, in [0, 1). */
  timeMask?: number;
}



/**
 * Returns the original cases followed by `copies` augmented copies of each (copy `k` of case `i`
 * at index `n * (k + 1) + i`), and the labels (or targets) repeated to match.
 *
 * @param series standardised cases, each `[T_i * C]` time-major (not modified).
 * @param labels one label (class index or target row) per case.
 * @param channels `C`.
 * @param seed seeds the random stream (the same inputs and seed give the same copies).
 * @throws {RangeError} for a negative or non-integer `copies`, a negative `jitter`/`scale`, or
 *   `timeMask` outside `[0, 1)`.
 */
export function augmentSeries<L>(
  series: readonly Float32Array[],
  labels: readonly L[],
  channels: number,
  opts: AugmentOptions,
  seed: number,
): { series: Float32Array[]; labels: L[] } {
  const { copies, jitter = 0, scale = 0, timeMask = 0 } = opts;
  if (!Number.isInteger(copies) || copies < 0) throw new RangeError(`copies must be an integer >= 0, found ${copies}`);
  if (!(jitter >= 0)) throw new RangeError(`jitter must be >= 0, found ${jitter}`);
  if (!(scale >= 0)) throw new RangeError(`scale must be >= 0, found ${scale}`);
  if (!(timeMask >= 0 && timeMask < 1)) throw new RangeError(`timeMask must be in [0, 1), found ${timeMask}`);
  const rand = mulberry32(seed ^ 0x5bd1e995);
  const normal = () => {
    const u = 1 - rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
  const outS: Float32Array[] = [...series];
  const outL: L[] = [...labels];
  for (let k = 0; k < copies; k++) {
    series.forEach((s, i) => {
      const t = s.length / channels;
      const f = Array.from({ length: channels }, () => (scale > 0 ? 1 + scale * normal() : 1));
      const o = new Float32Array(s.length);
      for (let j = 0; j < s.length; j++) o[j] = s[j]! * f[j % channels]! + (jitter > 0 ? jitter * normal() : 0);
      if (timeMask > 0) {
        const w = Math.min(t - 1, Math.floor(rand() * timeMask * t));
        const start = Math.floor(rand() * (t - w + 1));
        o.fill(0, start * channels, (start + w) * channels);
      }
      outS.push(o);
      outL.push(labels[i]!);
    });
  }
  return { series: outS, labels: outL };
}
