/**
 * Reading the input of `gqa predict`: one or more series from `.csv`, `.npy` or `.ts`, as one
 * padded batch `[B, T, C]` with per-case lengths.
 */
import { padBatch, type PaddedBatch } from "./batch.js";
import { readCsv } from "./csv.js";
import { DataFormatError } from "./errors.js";
import { readNpy } from "./npy.js";
import { readUea } from "./uea.js";

/** A batch of series to predict on. */
export interface SeriesInput extends PaddedBatch {
  /** The file format that was read. */
  format: "csv" | "npy" | "ts";
  /** The unpadded cases, each `[T_i * C]` time-major (for standardisation before padding). */
  series: Float32Array[];
  /** Labels when the input was a labelled `.ts` file (indices into `classLabels`), else `undefined`. */
  labels?: number[];
  /** Class labels declared by a `.ts` input, else `undefined`. */
  classLabels?: string[];
}

/**
 * Reads a predict input by extension:
 * - `.csv`: one series, rows = time steps, columns = channels (`B = 1`);
 * - `.npy`: float32/float64, shape `[T, C]` (`B = 1`) or `[B, T, C]` (all `T` steps valid);
 * - `.ts`: a UEA file (all its cases; labels kept for reference).
 *
 * @throws {DataNotFoundError} for a missing file.
 * @throws {DataFormatError} for a malformed file, an unknown extension, or an `.npy` of another rank
 *   or with a zero dimension.
 */
export async function readSeriesInput(path: string): Promise<SeriesInput> {
  const ext = /\.([^./\\]+)$/.exec(path)?.[1]?.toLowerCase();
  if (ext === "csv" || ext === "txt") {
    const s = await readCsv(path);
    return { ...padBatch([s.data], s.channels), format: "csv", series: [s.data] };
  }
  if (ext === "npy") {
    const a = await readNpy(path);
    let b: number, t: number, c: number;
    if (a.shape.length === 2) [b, t, c] = [1, a.shape[0]!, a.shape[1]!];
    else if (a.shape.length === 3) [b, t, c] = a.shape as [number, number, number];
    else throw new DataFormatError(path, undefined, `expected shape [T, C] or [B, T, C], found (${a.shape.join(", ")})`);
    if (t === 0 || c === 0) throw new DataFormatError(path, undefined, `T and C must be >= 1, found shape (${a.shape.join(", ")})`);
    const series = Array.from({ length: b }, (_, i) => a.data.slice(i * t * c, (i + 1) * t * c));
    return { data: a.data, dims: [b, t, c], lengths: new Array<number>(b).fill(t), format: "npy", series };
  }
  if (ext === "ts") {
    const d = await readUea(path);
    return {
      ...padBatch(d.series, d.channels),
      format: "ts",
      series: d.series,
      labels: d.labels.length ? d.labels : undefined,
      classLabels: d.classLabels.length ? d.classLabels : undefined,
    };
  }
  throw new DataFormatError(path, undefined, `unknown input format '.${ext ?? ""}' (expected .csv, .npy or .ts)`);
}
