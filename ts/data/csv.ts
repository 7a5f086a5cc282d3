/**
 * Reader for one multichannel series as numeric CSV: rows are time steps, columns are channels.
 *
 * ```
 * ch0,ch1,ch2        <- optional header (any first row with a non-numeric field)
 * 0.1,0.2,0.3
 * 0.4,0.5,0.6
 * ```
 * Separator `,` (or `;` / tab, detected from the first data row); surrounding spaces are ignored;
 * blank lines and lines starting with `#` are skipped. Every row must have the same number of columns;
 * every value must be a finite number. Quoted fields are only accepted in the header.
 */
import { DataFormatError, readTextOrThrow } from "./errors.js";
import { parseNumber } from "./uea.js";

/** One series read from CSV. */
export interface CsvSeries {
  /** `[T * C]` time-major float32 (`t*C + c`). */
  data: Float32Array;
  /** Number of rows `T` (>= 1). */
  timesteps: number;
  /** Number of columns `C` (>= 1). */
  channels: number;
  /** Header names when the file has a header row, else `undefined`. */
  columns: string[] | undefined;
}

const NUMERIC = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$/;

/**
 * Parses CSV text (see the module doc for the format).
 *
 * @param file name used in error messages.
 * @throws {DataFormatError} naming the 1-based line: ragged rows (`expected 3 columns, found 2`),
 *   non-numeric or non-finite values, a file with no data rows.
 */
export function parseCsv(text: string, file = "<input>"): CsvSeries {
  const lines = text.split(/\r?\n/);
  let sep: string | undefined;
  let columns: string[] | undefined;
  let channels = 0;
  const values: number[] = [];
  let rows = 0;
  let headerChecked = false;
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i]!.replace(/^\uFEFF/, "").trim();
    if (raw === "" || raw.startsWith("#")) continue;
    if (sep === undefined) sep = raw.includes(",") ? "," : raw.includes(";") ? ";" : raw.includes("\t") ? "\t" : ",";
    const fields = raw.split(sep);
    if (!headerChecked) {
      headerChecked = true;
      if (fields.some((f) => !NUMERIC.test(f))) {
        columns = fields.map((f) => f.trim().replace(/^"(.*)"$/, "$1"));
        channels = fields.length;
        continue;
      }
    }
    if (channels === 0) channels = fields.length;
    if (fields.length !== channels) {
      throw new DataFormatError(file, lineNo, `expected ${channels} column${channels === 1 ? "" : "s"}, found ${fields.length}`);
    }
    for (let c = 0; c < channels; c++) values.push(parseNumber(fields[c]!, file, lineNo, `column ${c + 1}`));
    rows++;
  }
  if (rows === 0) throw new DataFormatError(file, Math.max(1, lines.length), "no data rows (expected one row per time step)");
  return { data: Float32Array.from(values), timesteps: rows, channels, columns };
}

/**
 * Reads and parses a CSV file (Node only).
 * @throws {DataNotFoundError} for a missing file; {@link DataFormatError} as {@link parseCsv}.
 */
export async function readCsv(path: string): Promise<CsvSeries> {
  return parseCsv(await readTextOrThrow(path), path);
}
