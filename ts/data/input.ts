/**
 * Reading the input of `gqa predict`: one or more series from `.csv`, `.npy` or `.ts`, as one
 * padded batch `[B, T, C]` with per-case lengths. Files in the formats `gqa train` reads go
 * through its reader ({@link readLabelled}, labels optional and not read).
 */
import { padBatch, type PaddedBatch } from "./batch.js";
import { parseCsv } from "./csv.js";
import { DataFormatError, readTextOrThrow } from "./errors.js";
import { parseLabelledCsv, readLabelled } from "./labelled.js";
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
  /** A CSV with an id column: the id of each case, else `undefined`. */
  ids?: string[];
}

/** Options of {@link readSeriesInput}: the CSV columns of `gqa train`'s long format. */
export interface SeriesInputOptions {
  /** The id column (default `id`). */
  idColumn?: string;
  /** The label column(s) (default `["label"]`), left out of the channels. */
  labelColumns?: string[];
}

/** The header fields of CSV text: its first line that is not blank or a `#` comment, split as the readers split it. */
function csvHeader(text: string): string[] {
  for (const line of text.split(/\r?\n/)) {
    const raw = line.replace(/^\uFEFF/, "").trim();
    if (raw === "" || raw.startsWith("#")) continue;
    const sep = raw.includes(",") ? "," : raw.includes(";") ? ";" : raw.includes("\t") ? "\t" : ",";
    return raw.split(sep).map((f) => f.trim().replace(/^"(.*)"$/, "$1"));
  }
  return [];
}

/**
 * Reads a predict input by extension:
 * - `.csv` whose header names the id column or a label column: `gqa train`'s long format (one row
 *   per time step; the id column groups consecutive rows into cases, each row is a case without
 *   it; label columns are left out of the channels, and need not be there); every case, with its
 *   id when there is an id column;
 * - any other `.csv`: one series, rows = time steps, columns = channels (`B = 1`; header optional);
 * - `.npy`: float32/float64, shape `[T, C]` (`B = 1`) or `[B, T, C]` (all `T` steps valid);
 * - `.ts`: a UEA file (all its cases; labels kept for reference).
 *
 * @throws {DataNotFoundError} for a missing file.
 * @throws {DataFormatError} for a malformed file, an unknown extension, or an `.npy` of another rank
 *   or with a zero dimension.
 */
export async function readSeriesInput(path: string, opts: SeriesInputOptions = {}): Promise<SeriesInput> {
  const ext = /\.([^./\\]+)$/.exec(path)?.[1]?.toLowerCase();
  if (ext === "csv" || ext === "txt") {
    const text = await readTextOrThrow(path);
    const header = csvHeader(text);
    const labelColumns = opts.labelColumns?.length ? opts.labelColumns : ["label"];
    if (header.includes(opts.idColumn ?? "id") || labelColumns.some((c) => header.includes(c))) {
      const d = parseLabelledCsv(text, path, { task: "unlabelled", labelColumns, ...(opts.idColumn !== undefined && { idColumn: opts.idColumn }) });
      return { ...padBatch(d.series, d.channels), format: "csv", series: d.series, ...(d.ids && { ids: d.ids }) };
    }
    let s: ReturnType<typeof parseCsv>;
    try {
      s = parseCsv(text, path);
    } catch (e) {
      if (e instanceof DataFormatError && e.problem.endsWith("is not a finite number")) {
        throw new DataFormatError(e.file, e.line, `${e.problem} (a CSV of several cases needs an id column: name it with --id-column, default 'id')`);
      }
      throw e;
    }
    return { ...padBatch([s.data], s.channels), format: "csv", series: [s.data] };
  }
  if (ext === "npy") {
    const d = await readLabelled(path, { task: "unlabelled" });
    return { ...padBatch(d.series, d.channels), format: "npy", series: d.series };
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
