/**
 * Cases, with their labels, from the user's own files: what `gqa train` trains on, `gqa eval`
 * scores and `gqa predict` predicts for (Node only):
 *
 * - **CSV** (long format, header required): one row per time step; the label column
 *   (`label` unless named otherwise) gives the case's class or regression target; an `id` column,
 *   when present, groups consecutive rows with the same id into one case (without it every row is
 *   a case of one step); every other column is a channel. For regression several label columns
 *   may be named (one output each).
 *   ```
 *   id,label,x,y
 *   a,walk,0.1,0.2      <- case "a", step 0
 *   a,walk,0.3,0.1      <- case "a", step 1
 *   b,run,1.5,0.9       <- case "b"
 *   ```
 * - **`.npy`** `[B, T, C]` (or `[T, C]`: one case) float32/float64, with a labels file: text (one
 *   label per line, blank and `#` lines skipped) or a float `.npy` `[B]` / `[B, K]` (regression).
 * - **UEA `.ts`** (classification; the labels come from the file).
 *
 * With `task: "unlabelled"` (`gqa predict`) the labels are optional and not read: label columns
 * present in a CSV header are left out of the channels, `.npy` data needs no labels file, and a
 * `.ts` file's labels are ignored.
 *
 * Every problem names the file, the 1-based line (text) or the case index (`.npy`), and what is
 * wrong: a missing label column, ragged rows, a label file whose length differs from the data,
 * NaN or other non-finite values, a label that changes within a case.
 */
import { DataFormatError, readFileOrThrow, readTextOrThrow } from "./errors.js";
import { parseNpy } from "./npy.js";
import { parseNumber, readUea } from "./uea.js";

/** What the labels are. */
export type Task = "classification" | "regression";

/** Cases with their labels, as read from one file (before class names become indices). */
export interface RawLabelled {
  /** The data file. */
  file: string;
  format: "csv" | "npy" | "ts";
  /** Channels `C`. */
  channels: number;
  /** Cases, each `[T_i * C]` time-major float32. */
  series: Float32Array[];
  /** Classification: the class name of each case. */
  classNames?: string[];
  /** Regression: the targets of each case (`K` values). */
  targets?: number[][];
  /** Where case `i` starts, for messages: `"line 7"` or `"index 3"`. */
  where: string[];
  /** CSV with an id column: the id of each case; else undefined. */
  ids?: string[];
  /** Declared class labels (UEA `@classLabel`), in file order; else undefined. */
  declaredClasses?: string[];
  /** Regression: the names of the targets (label columns), when known. */
  targetNames?: string[];
}

/** Options of {@link readLabelled}. */
export interface LabelledReadOptions {
  /** What the labels are; `"unlabelled"`: the labels are optional and not read (see the module doc). */
  task: Task | "unlabelled";
  /** `.npy` data: the labels file. */
  labels?: string;
  /** CSV: the label column(s), default `["label"]` (several only for regression). */
  labelColumns?: string[];
  /** CSV: the id column, default `id` (used when the header has it). */
  idColumn?: string;
}

const extOf = (path: string) => /\.([^./\\]+)$/.exec(path)?.[1]?.toLowerCase() ?? "";

/**
 * Reads one labelled file by extension (`.csv`/`.txt`, `.npy`, `.ts`).
 *
 * @throws {DataNotFoundError} for a missing file.
 * @throws {DataFormatError} naming file and line/index for every problem listed in the module doc,
 *   an unknown extension, labelled `.npy` data without `labels`, or regression on a `.ts` file.
 */
export async function readLabelled(path: string, opts: LabelledReadOptions): Promise<RawLabelled> {
  checkTask(path, opts);
  const ext = extOf(path);
  if (ext === "csv" || ext === "txt") {
    return parseLabelledCsv(await readTextOrThrow(path), path, opts);
  }
  if (ext === "npy") {
    if (opts.labels === undefined && opts.task !== "unlabelled") throw new DataFormatError(path, undefined, ".npy data needs a labels file (--labels for training data, --test-labels for test data)");
    const a = parseNpy(await readFileOrThrow(path), path);
    let b: number, t: number, c: number;
    if (a.shape.length === 2) [b, t, c] = [1, a.shape[0]!, a.shape[1]!];
    else if (a.shape.length === 3) [b, t, c] = a.shape as [number, number, number];
    else throw new DataFormatError(path, undefined, `expected shape [T, C] or [B, T, C], found (${a.shape.join(", ")})`);
    if (b === 0 || t === 0 || c === 0) throw new DataFormatError(path, undefined, `B, T and C must be >= 1, found shape (${a.shape.join(", ")})`);
    const series = Array.from({ length: b }, (_, i) => a.data.slice(i * t * c, (i + 1) * t * c));
    const where = series.map((_, i) => `index ${i}`);
    if (opts.task === "unlabelled" || opts.labels === undefined) return { file: path, format: "npy", channels: c, series, where };
    const lab = await readLabelsFile(opts.labels, opts.task);
    if (lab.count !== b) {
      throw new DataFormatError(opts.labels, lab.lastLine, `${lab.count} label${lab.count === 1 ? "" : "s"}, but ${path} has ${b} case${b === 1 ? "" : "s"} (shape (${a.shape.join(", ")}))`);
    }
    return { file: path, format: "npy", channels: c, series, where, ...(opts.task === "classification" ? { classNames: lab.names! } : { targets: lab.targets! }) };
  }
  if (ext === "ts") {
    if (opts.task === "regression") throw new DataFormatError(path, undefined, "regression from UEA .ts files is not supported (the reader takes @classLabel data); use CSV or .npy");
    const d = await readUea(path);
    if (opts.task === "unlabelled") return { file: path, format: "ts", channels: d.channels, series: d.series, where: d.series.map((_, i) => `case ${i}`) };
    if (!d.labels.length) throw new DataFormatError(path, undefined, "@classLabel false: the file has no labels to train on");
    return {
      file: path,
      format: "ts",
      channels: d.channels,
      series: d.series,
      classNames: d.labels.map((l) => d.classLabels[l]!),
      where: d.series.map((_, i) => `case ${i}`),
      declaredClasses: d.classLabels,
    };
  }
  throw new DataFormatError(path, undefined, `unknown data format '.${ext}' (expected .csv, .npy or .ts)`);
}

/**
 * Reads a labels file for `.npy` data: `.npy` (float; `[B]` or, for regression, `[B, K]`) or
 * text (one label per line; blank and `#` lines skipped; regression: comma-separated numbers).
 * @returns the labels and, for text, the line of the last label (for messages).
 */
export async function readLabelsFile(path: string, task: Task): Promise<{ count: number; names?: string[]; targets?: number[][]; lastLine?: number }> {
  const bytes = await readFileOrThrow(path);
  if (extOf(path) === "npy") {
    const a = parseNpy(bytes, path);
    if (a.shape.length !== 1 && !(a.shape.length === 2 && task === "regression")) {
      throw new DataFormatError(path, undefined, `expected labels of shape [B]${task === "regression" ? " or [B, K]" : ""}, found (${a.shape.join(", ")})`);
    }
    const b = a.shape[0]!;
    const k = a.shape.length === 2 ? a.shape[1]! : 1;
    const rows = Array.from({ length: b }, (_, i) => Array.from(a.data.subarray(i * k, (i + 1) * k)));
    if (task === "regression") return { count: b, targets: rows };
    return { count: b, names: rows.map((r) => String(r[0])) };
  }
  const lines = new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes).split(/\r?\n/);
  const names: string[] = [];
  const targets: number[][] = [];
  let width = 0;
  let lastLine: number | undefined;
  lines.forEach((raw, i) => {
    const s = raw.replace(/^\uFEFF/, "").trim();
    if (s === "" || s.startsWith("#")) return;
    lastLine = i + 1;
    if (task === "classification") {
      names.push(s);
      return;
    }
    const row = s.split(/[,;\t]/).map((f, j) => parseNumber(f, path, i + 1, `label ${names.length + targets.length + 1}${j ? `, value ${j + 1}` : ""}`));
    if (width === 0) width = row.length;
    if (row.length !== width) throw new DataFormatError(path, i + 1, `expected ${width} target value${width === 1 ? "" : "s"}, found ${row.length}`);
    targets.push(row);
  });
  return task === "classification" ? { count: names.length, names, lastLine } : { count: targets.length, targets, lastLine };
}

/** Splits a CSV line on `sep`, honouring double quotes (`"a,b"`, `""` for a quote). */
function splitCsv(line: string, sep: string): string[] {
  if (!line.includes('"')) return line.split(sep);
  const out: string[] = [];
  let cur = "";
  let q = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (q) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') q = false;
      else cur += ch;
    } else if (ch === '"') q = true;
    else if (ch === sep) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/** The columns of a labelled CSV, from its header row. */
interface CsvColumns {
  /** Field separator: `,`, else `;`, else tab (the first of them the header contains). */
  sep: string;
  /** Column names, trimmed. */
  header: string[];
  /** Indices of the label columns, in `--label-column` order (empty for unlabelled data without them). */
  labelIdx: number[];
  /** Index of the id column, or -1 (then every row is a single-step case). */
  idIdx: number;
  /** Indices of the channel columns: every column but the labels and the id. */
  chanIdx: number[];
}

/**
 * Parses the header row `raw` (1-based line `lineNo`): the separator, the column names, and which
 * columns hold the labels (`labelCols`), the case id (`idName`) and the channels.
 * @throws {DataFormatError} a label column missing (unless `unlabelled`), or no channel column left.
 */
function parseCsvHeader(raw: string, file: string, lineNo: number, labelCols: readonly string[], idName: string, unlabelled: boolean): CsvColumns {
  const sep = raw.includes(",") ? "," : raw.includes(";") ? ";" : raw.includes("\t") ? "\t" : ",";
  const header = splitCsv(raw, sep).map((f) => f.trim());
  const labelIdx: number[] = [];
  for (const name of labelCols) {
    const j = header.indexOf(name);
    if (j < 0 && !unlabelled) {
      throw new DataFormatError(file, lineNo, `no label column '${name}' in the header (columns: ${header.join(", ")}); name it with --label-column`);
    }
    if (j >= 0) labelIdx.push(j);
  }
  const idIdx = header.indexOf(idName);
  const chanIdx = header.map((_, j) => j).filter((j) => j !== idIdx && !labelIdx.includes(j));
  if (chanIdx.length === 0) throw new DataFormatError(file, lineNo, `no channel columns: the header has only the label${idIdx >= 0 ? " and id" : ""} column${idIdx >= 0 ? "s" : ""}`);
  return { sep, header, labelIdx, idIdx, chanIdx };
}

/**
 * Parses a labelled CSV (see the module doc).
 * @throws {DataFormatError} naming the 1-based line: no header or no data rows, a missing label
 *   column (line 1), ragged rows, non-numeric or non-finite values, a label that changes within a
 *   case, a case id that appears again after another case, a non-numeric regression target.
 */
export function parseLabelledCsv(text: string, file: string, opts: LabelledReadOptions): RawLabelled {
  checkTask(file, opts);
  const labelCols = opts.labelColumns?.length ? opts.labelColumns : ["label"];
  const idName = opts.idColumn ?? "id";
  const unlabelled = opts.task === "unlabelled";
  if (opts.task === "classification" && labelCols.length !== 1) {
    throw new DataFormatError(file, undefined, `classification takes one label column, found ${labelCols.length} (${labelCols.join(", ")})`);
  }
  const lines = text.split(/\r?\n/);
  let cols: CsvColumns | undefined;
  let headerLine = 0;
  const series: Float32Array[] = [];
  const where: string[] = [];
  const ids: string[] = [];
  const classNames: string[] = [];
  const targets: number[][] = [];
  const seen = new Set<string>();
  let curId: string | undefined;
  let curVals: number[] = [];
  let curLabel = "";
  let curLine = 0;
  const flush = () => {
    if (curId === undefined) return;
    series.push(Float32Array.from(curVals));
    where.push(`line ${curLine}`);
    ids.push(curId);
    if (opts.task === "classification") classNames.push(curLabel);
    curId = undefined;
    curVals = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i]!.replace(/^\uFEFF/, "").trim();
    if (raw === "" || raw.startsWith("#")) continue;
    if (cols === undefined) {
      cols = parseCsvHeader(raw, file, lineNo, labelCols, idName, unlabelled);
      headerLine = lineNo;
      continue;
    }
    const { header, labelIdx, idIdx, chanIdx } = cols;
    const fields = splitCsv(raw, cols.sep);
    if (fields.length !== header.length) {
      throw new DataFormatError(file, lineNo, `ragged row: expected ${header.length} fields (as the header on line ${headerLine}), found ${fields.length}`);
    }
    const id = idIdx >= 0 ? fields[idIdx]!.trim() : `row ${lineNo}`;
    const label = unlabelled ? "" : labelIdx.map((j) => fields[j]!.trim()).join(",");
    if (id !== curId) {
      flush();
      if (seen.has(id)) throw new DataFormatError(file, lineNo, `case id '${id}' appears again after other cases (rows of a case must be consecutive)`);
      seen.add(id);
      curId = id;
      curLabel = label;
      curLine = lineNo;
      if (opts.task === "classification") {
        if (label === "") throw new DataFormatError(file, lineNo, `empty label in column '${labelCols[0]}'`);
      } else if (opts.task === "regression") {
        targets.push(labelIdx.map((j, k) => parseNumber(fields[j]!, file, lineNo, `label column '${labelCols[k]}'`)));
      }
    } else if (label !== curLabel) {
      throw new DataFormatError(file, lineNo, `label '${label}' differs from '${curLabel}' on line ${curLine}, the first row of case '${id}' (a case has one label)`);
    }
    for (const j of chanIdx) curVals.push(parseNumber(fields[j]!, file, lineNo, `column '${header[j]}'`));
  }
  flush();
  if (cols === undefined) throw new DataFormatError(file, 1, "empty file: expected a header row naming the label and channel columns");
  if (series.length === 0) throw new DataFormatError(file, headerLine, "no data rows after the header");
  return {
    file,
    format: "csv",
    channels: cols.chanIdx.length,
    series,
    where,
    ...(cols.idIdx >= 0 && { ids }),
    ...(opts.task === "classification" ? { classNames } : opts.task === "regression" ? { targets, targetNames: labelCols } : {}),
  };
}

/**
 * Refuses a missing or unknown `task` (from plain JavaScript): without it a label column would be
 * read as regression targets and a class name reported as "not a finite number".
 *
 * @throws {RangeError} naming the file and the value found.
 */
function checkTask(file: string, opts: LabelledReadOptions | undefined): void {
  const task = (opts as { task?: unknown } | undefined)?.task;
  if (task !== "classification" && task !== "regression" && task !== "unlabelled") {
    throw new RangeError(`${file}: options.task must be "classification", "regression" or "unlabelled", found ${task === undefined ? "nothing" : JSON.stringify(task)}`);
  }
}

/** Orders class names: numerically when every name is a number, else by string (the CLI's class order). */
export function sortClassNames(names: Iterable<string>): string[] {
  const u = [...new Set(names)];
  const numeric = u.every((s) => s.trim() !== "" && Number.isFinite(Number(s)));
  return numeric ? u.sort((a, b) => Number(a) - Number(b)) : u.sort();
}
