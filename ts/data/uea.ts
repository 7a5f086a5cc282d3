/**
 * Reader for the UEA/UCR `.ts` time-series classification format (the format of the UEA
 * multivariate archive, Bagnall et al. 2018, arXiv:1811.00075, as written by sktime).
 *
 * Layout of a file:
 * ```
 * # comment lines start with '#', anywhere
 * @problemName JapaneseVowels
 * @timeStamps false
 * @missing false
 * @univariate false
 * @dimensions 12
 * @equalLength false
 * @seriesLength 29          (only meaningful with @equalLength true)
 * @classLabel true 1 2 3 4 5 6 7 8 9
 * @data
 * 1.86,1.89,...:-0.20,-0.19,...: ... :1      <- one case per line: channels separated by ':',
 *                                               comma-separated values per channel, class label last
 * ```
 * Tags are case-insensitive. Series may have different lengths across cases, but all channels of
 * one case have the same length. Missing values (`?`), time stamps and regression targets are not
 * supported and raise a {@link DataFormatError} naming the line.
 */
import { DataFormatError, readTextOrThrow } from "./errors.js";

/**
 * A parsed UEA classification dataset (one split).
 *
 * Shapes: `N` cases, case `i` has `lengths[i]` = `T_i` time steps and `channels` = `C` channels.
 */
export interface UeaDataset {
  /** `@problemName`, or the file name stem when the tag is absent. */
  name: string;
  /** Number of channels `C` (`@dimensions`, or 1 for `@univariate true`, or inferred from the first case). */
  channels: number;
  /** Class labels in the order of `@classLabel`; `labels[i]` indexes this list. Empty for `@classLabel false`. */
  classLabels: string[];
  /** One float32 array per case, `[T_i * C]`, time-major: element `t*C + c` is channel `c` at step `t`. */
  series: Float32Array[];
  /** `T_i` per case (>= 1). */
  lengths: number[];
  /** Class index per case into `classLabels`; empty when the file has no labels (`@classLabel false`). */
  labels: number[];
}

const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Parses one numeric field (a `.ts` or CSV value). Accepts decimal and exponent notation; rejects
 * `?` (missing), `NaN`, `Infinity`, empty strings and anything else with a message for `where`.
 *
 * @returns the value as a double (the caller stores it as float32).
 * @throws {DataFormatError} with the given file and line.
 */
export function parseNumber(token: string, file: string, line: number, where: string): number {
  const s = token.trim();
  if (NUMBER_RE.test(s)) {
    const v = Number(s);
    if (Number.isFinite(v) && Math.abs(v) <= 3.4028234663852886e38) return v;
    throw new DataFormatError(file, line, `${where}: value '${s}' does not fit in float32`);
  }
  if (s === "?") throw new DataFormatError(file, line, `${where}: missing value '?' (missing values are not supported)`);
  if (s === "") throw new DataFormatError(file, line, `${where}: empty value`);
  throw new DataFormatError(file, line, `${where}: '${s.length > 40 ? s.slice(0, 40) + "..." : s}' is not a finite number`);
}

interface Header {
  problemName?: string;
  timeStamps?: boolean;
  missing?: boolean;
  univariate?: boolean;
  dimensions?: number;
  equalLength?: boolean;
  seriesLength?: number;
  classLabel?: boolean;
  classLabels: string[];
}

function parseBool(value: string | undefined, tag: string, file: string, line: number): boolean {
  const v = (value ?? "").toLowerCase();
  if (v === "true") return true;
  if (v === "false") return false;
  throw new DataFormatError(file, line, `${tag} expects true or false, found '${value ?? ""}'`);
}

function parsePositiveInt(value: string | undefined, tag: string, file: string, line: number): number {
  if (value !== undefined && /^\d+$/.test(value)) {
    const n = Number(value);
    if (n >= 1 && Number.isSafeInteger(n)) return n;
  }
  throw new DataFormatError(file, line, `${tag} expects an integer >= 1, found '${value ?? ""}'`);
}

/**
 * Parses the text of a `.ts` file.
 *
 * @param text the whole file (UTF-8/ASCII; `\n` or `\r\n` line ends).
 * @param file the name used in error messages (default `"<input>"`).
 * @throws {DataFormatError} on any malformed header or case, naming the 1-based line, e.g.
 *   `"line 57: expected 12 channels, found 11"` as `file:57: expected 12 channels, found 11`.
 */
export function parseUea(text: string, file = "<input>"): UeaDataset {
  const lines = text.split(/\r?\n/);
  const { header, dataLine, next } = parseHeader(lines, file);
  const { channels, series, lengths, labels } = parseCases(lines, next, header, file);
  if (series.length === 0) throw new DataFormatError(file, dataLine, "no cases after @data");

  const stem = file.replace(/^.*[\\/]/, "").replace(/(_TRAIN|_TEST)?\.ts$/i, "");
  return {
    name: header.problemName ?? stem,
    channels,
    classLabels: header.classLabels,
    series,
    lengths,
    labels,
  };
}

/**
 * Parses the header: every line up to and including `@data` (blank and `#` lines skipped), then
 * checks the tags against each other. A `@seriesLength` with `@equalLength false` is dropped.
 *
 * @returns the header, the 1-based line of `@data` and the 0-based index of the line after it.
 * @throws {DataFormatError} for a line that is not a tag, a duplicate, unknown or malformed tag,
 *   no `@data`, no `@classLabel`, or `@univariate true` with `@dimensions` other than 1.
 */
function parseHeader(lines: readonly string[], file: string): { header: Header & { classLabel: boolean }; dataLine: number; next: number } {
  const header: Header = { classLabels: [] };
  const seen = new Set<string>();
  let dataLine = 0; // 1-based line of @data
  let i = 0;
  for (; i < lines.length && !dataLine; i++) {
    const lineNo = i + 1;
    const raw = lines[i]!.trim();
    if (raw === "" || raw.startsWith("#")) continue;
    if (!raw.startsWith("@")) {
      throw new DataFormatError(file, lineNo, "data before @data (expected a header tag such as @problemName, or @data)");
    }
    const parts = raw.split(/\s+/);
    const key = parts[0]!.toLowerCase();
    if (seen.has(key)) throw new DataFormatError(file, lineNo, `duplicate header tag ${parts[0]!}`);
    seen.add(key);
    if (applyHeaderTag(header, parts, file, lineNo)) dataLine = lineNo;
  }
  if (!dataLine) throw new DataFormatError(file, Math.max(1, lines.length), "missing @data (end of file reached in the header)");
  if (header.classLabel === undefined) throw new DataFormatError(file, dataLine, "missing @classLabel before @data");
  if (header.univariate === true && header.dimensions !== undefined && header.dimensions !== 1) {
    throw new DataFormatError(file, dataLine, `@univariate true contradicts @dimensions ${header.dimensions}`);
  }
  if (header.seriesLength !== undefined && header.equalLength === false) {
    // sktime writes @seriesLength only for equal-length data; accept it but do not enforce it.
    header.seriesLength = undefined;
  }
  return { header: header as Header & { classLabel: boolean }, dataLine, next: i };
}

/**
 * Applies one header tag line (`parts`: the tag, then its whitespace-separated values) to `header`.
 *
 * @returns true for `@data` (the header ends there).
 * @throws {DataFormatError} for an unknown or unsupported tag (`@targetLabel`, `@timeStamps true`)
 *   or a malformed value.
 */
function applyHeaderTag(header: Header, parts: readonly string[], file: string, lineNo: number): boolean {
  const tag = parts[0]!;
  const value = parts[1];
  switch (tag.toLowerCase()) {
    case "@problemname":
      if (value === undefined) throw new DataFormatError(file, lineNo, "@problemName needs a name");
      header.problemName = parts.slice(1).join(" ");
      break;
    case "@timestamps":
      header.timeStamps = parseBool(value, tag, file, lineNo);
      if (header.timeStamps) throw new DataFormatError(file, lineNo, "@timeStamps true is not supported (only plain value lists)");
      break;
    case "@missing":
      header.missing = parseBool(value, tag, file, lineNo);
      break;
    case "@univariate":
      header.univariate = parseBool(value, tag, file, lineNo);
      break;
    case "@dimensions":
    case "@dimension":
      header.dimensions = parsePositiveInt(value, tag, file, lineNo);
      break;
    case "@equallength":
      header.equalLength = parseBool(value, tag, file, lineNo);
      break;
    case "@serieslength":
      header.seriesLength = parsePositiveInt(value, tag, file, lineNo);
      break;
    case "@classlabel":
      applyClassLabel(header, parts, file, lineNo);
      break;
    case "@targetlabel":
      throw new DataFormatError(file, lineNo, "@targetLabel (regression data) is not supported; expected @classLabel");
    case "@data":
      if (parts.length > 1) throw new DataFormatError(file, lineNo, "@data takes no value");
      return true;
    default:
      throw new DataFormatError(file, lineNo, `unknown header tag ${tag}`);
  }
  return false;
}

/**
 * `@classLabel true <labels...>` or `@classLabel false`: sets `classLabel` and `classLabels`.
 * @throws {DataFormatError} for `true` without labels, `false` with labels, or a label listed twice.
 */
function applyClassLabel(header: Header, parts: readonly string[], file: string, lineNo: number): void {
  header.classLabel = parseBool(parts[1], parts[0]!, file, lineNo);
  const labels = parts.slice(2);
  if (header.classLabel && labels.length === 0) {
    throw new DataFormatError(file, lineNo, "@classLabel true must list the class labels");
  }
  if (!header.classLabel && labels.length > 0) {
    throw new DataFormatError(file, lineNo, "@classLabel false must not list labels");
  }
  const dup = labels.find((l, j) => labels.indexOf(l) !== j);
  if (dup !== undefined) throw new DataFormatError(file, lineNo, `class label '${dup}' listed twice in @classLabel`);
  header.classLabels = labels;
}

/** The cases of a file: channels `C` (from the header, else the first case) and per case its series `[T_i * C]`, length and label index. */
interface ParsedCases {
  channels: number;
  series: Float32Array[];
  lengths: number[];
  labels: number[];
}

/**
 * Parses the case lines from `lines[start]` on (blank and `#` lines skipped), one case per line.
 * @throws {DataFormatError} for a header tag after `@data` or a malformed case (see {@link parseCase}).
 */
function parseCases(lines: readonly string[], start: number, header: Header & { classLabel: boolean }, file: string): ParsedCases {
  const labelIndex = new Map(header.classLabels.map((l, j) => [l, j] as const));
  const cases: ParsedCases = { channels: header.dimensions ?? (header.univariate ? 1 : 0), series: [], lengths: [], labels: [] }; // channels 0 = infer from the first case
  for (let i = start; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i]!.trim();
    if (raw === "" || raw.startsWith("#")) continue;
    if (raw.startsWith("@")) throw new DataFormatError(file, lineNo, `header tag ${raw.split(/\s+/)[0]} after @data`);
    const fields = raw.split(":");
    const label = header.classLabel ? caseLabel(fields, header.classLabels, labelIndex, file, lineNo) : undefined;
    if (cases.channels === 0) cases.channels = fields.length;
    const expectedLength = header.equalLength ? header.seriesLength ?? cases.lengths[0] : undefined;
    const out = parseCase(fields, cases.channels, expectedLength, file, lineNo);
    cases.series.push(out);
    cases.lengths.push(out.length / cases.channels);
    if (label !== undefined) cases.labels.push(label);
  }
  return cases;
}

/**
 * Removes the class label (the last `:`-separated field) from `fields` and returns its index in
 * `@classLabel`'s list.
 * @throws {DataFormatError} for a line without `:`, a value list where the label should be, or a
 *   label not in `@classLabel`.
 */
function caseLabel(fields: string[], classLabels: readonly string[], labelIndex: ReadonlyMap<string, number>, file: string, lineNo: number): number {
  const l = fields.pop()!.trim();
  if (fields.length === 0) throw new DataFormatError(file, lineNo, "expected channels and a class label separated by ':', found no ':'");
  if (l.includes(",")) {
    throw new DataFormatError(file, lineNo, `expected a class label after the last ':', found a list of values (is the label missing?)`);
  }
  const idx = labelIndex.get(l);
  if (idx === undefined) {
    throw new DataFormatError(file, lineNo, `class label '${l}' is not one of @classLabel (${classLabels.join(" ")})`);
  }
  return idx;
}

/**
 * Parses one case's channels (`fields`, each a comma-separated value list) into a time-major
 * `[T * C]` array.
 * @param expectedLength `T` every case must have (`@equalLength true`: `@seriesLength`, else the first case's); undefined: any.
 * @throws {DataFormatError} for a wrong channel count, an empty channel, channels of different
 *   lengths, a length other than `expectedLength`, or a value that is not a finite float32.
 */
function parseCase(fields: readonly string[], channels: number, expectedLength: number | undefined, file: string, lineNo: number): Float32Array {
  if (fields.length !== channels) {
    throw new DataFormatError(file, lineNo, `expected ${channels} channel${channels === 1 ? "" : "s"}, found ${fields.length}`);
  }
  const perChannel = fields.map((f) => f.split(","));
  const len = perChannel[0]!.length;
  for (let c = 0; c < channels; c++) {
    const n = perChannel[c]!.length;
    if (n === 1 && perChannel[c]![0]!.trim() === "") throw new DataFormatError(file, lineNo, `channel ${c + 1} is empty`);
    if (n !== len) {
      throw new DataFormatError(file, lineNo, `channel ${c + 1} has ${n} values, channel 1 has ${len} (channels of a case must have equal length)`);
    }
  }
  const expected = expectedLength ?? len;
  if (len !== expected) {
    throw new DataFormatError(file, lineNo, `expected series length ${expected} (@equalLength true), found ${len}`);
  }
  const out = new Float32Array(len * channels);
  for (let c = 0; c < channels; c++) {
    const vals = perChannel[c]!;
    for (let t = 0; t < len; t++) {
      out[t * channels + c] = parseNumber(vals[t]!, file, lineNo, `channel ${c + 1}, step ${t + 1}`);
    }
  }
  return out;
}

/**
 * Reads and parses a `.ts` file from disk (Node only).
 *
 * @throws {DataNotFoundError} when the file does not exist.
 * @throws {DataFormatError} when it is malformed (see {@link parseUea}).
 */
export async function readUea(path: string): Promise<UeaDataset> {
  return parseUea(await readTextOrThrow(path), path);
}
