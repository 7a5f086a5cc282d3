/**
 * `gqa predict --stream`: one time step per input line (its `C` channel values, separated by
 * commas or spaces) in, one prediction per line out, as each line arrives. Each ensemble member
 * keeps a KV-cache session (`session.predict`); a model trained with `--sliding-window W` keeps
 * at most about `W` positions per session, so memory stays constant however long the stream.
 */
import { createInterface } from "node:readline";
import { GQA, GqaError, type Model, type Session } from "../index.js";
import { DataFormatError } from "../data/errors.js";
import { type CliMetadata, modelInputs, unpackEnsemble } from "../model-file.js";

/** Where the stream's rows come from and where its lines go. */
export interface StreamIo {
  /** Text input, one time step per line. */
  input: NodeJS.ReadableStream;
  /** Writes one output line (without its newline). */
  write: (line: string) => void;
  /** The input's name in error messages. */
  name: string;
}

/** The members of a model file, each with an unbounded session. @throws GqaError `INVALID_INPUT` */
async function openSessions(bytes: Uint8Array, file: string): Promise<{ models: Model[]; sessions: Session[] }> {
  const models: Model[] = [];
  const sessions: Session[] = [];
  try {
    for (const b of unpackEnsemble(bytes, file)) {
      const m = await GQA.load(b);
      models.push(m);
      if (m.config.slidingWindow === undefined) {
        throw new GqaError("INVALID_INPUT", `--stream: ${file} has no slidingWindow, so its KV cache would grow with every line: train it with --sliding-window W`);
      }
      sessions.push(await m.session({}));
    }
  } catch (e) {
    for (const s of sessions) s.dispose();
    for (const m of models) m.dispose();
    throw e;
  }
  return { models, sessions };
}

/** One input line as `C` finite values. @throws DataFormatError naming the line */
function parseRow(line: string, channels: number, name: string, lineNo: number): Float32Array {
  const fields = line.split(/[\s,]+/).filter((f) => f !== "");
  if (fields.length !== channels) throw new DataFormatError(name, lineNo, `expected ${channels} values (the model's channels), found ${fields.length}`);
  const row = Float32Array.from(fields, Number);
  const bad = row.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new DataFormatError(name, lineNo, `value ${bad + 1} is not a finite number: ${JSON.stringify(fields[bad])}`);
  return row;
}

/**
 * Streams predictions: for every non-empty input line, the mean over the members of
 * `session.predict` on that time step (standardised with the statistics in the model file).
 * Classification lines: `{"index", "label", "probabilities"}` (JSON) or `index,label,p_...` (CSV,
 * after a header); regression: the predicted targets in the training targets' units.
 * @returns the number of rows read
 * @throws GqaError `INVALID_INPUT` (a model without a sliding window, patching or instance
 *   normalisation, which need whole cases); DataFormatError for a malformed line
 */
export async function runStream(bytes: Uint8Array, file: string, meta: CliMetadata, format: "json" | "csv", io: StreamIo): Promise<number> {
  const spec = meta.transform;
  if (spec !== undefined && (spec.patch !== 1 || spec.instanceNorm)) {
    throw new GqaError("INVALID_INPUT", `--stream: ${file} reads ${spec.patch !== 1 ? `patches of ${spec.patch} steps` : "instance-normalised cases"}, which need whole cases: train the streaming model with --recipe fixed`);
  }
  const { models, sessions } = await openSessions(bytes, file);
  const c = meta.channels;
  const regression = meta.task === "regression";
  const names = regression ? meta.targets!.names : meta.classLabels;
  if (format === "csv") io.write(["index", ...(regression ? names : ["label", ...names.map((l) => `p_${l}`)])].join(","));
  let index = 0;
  let lineNo = 0;
  try {
    for await (const line of createInterface({ input: io.input, crlfDelay: Number.POSITIVE_INFINITY })) {
      lineNo++;
      if (line.trim() === "") continue;
      const row = modelInputs([parseRow(line, c, io.name, lineNo)], meta).series[0]!;
      const mean = new Float64Array(names.length);
      for (const s of sessions) {
        const p = (await s.predict(row, [1, 1, c])).data;
        for (let k = 0; k < mean.length; k++) mean[k]! += p[k]! / sessions.length;
      }
      io.write(regression ? regressionLine(index, mean, meta, format) : classLine(index, mean, names, format));
      index++;
    }
  } finally {
    for (const s of sessions) s.dispose();
    for (const m of models) m.dispose();
  }
  return index;
}

function classLine(index: number, p: Float64Array, labels: string[], format: "json" | "csv"): string {
  let best = 0;
  for (let k = 1; k < p.length; k++) if (p[k]! > p[best]!) best = k;
  if (format === "csv") return [String(index), labels[best]!, ...Array.from(p, (v) => v.toPrecision(6))].join(",");
  return JSON.stringify({ index, label: labels[best]!, probabilities: Object.fromEntries(labels.map((l, k) => [l, p[k]!])) });
}

function regressionLine(index: number, out: Float64Array, meta: CliMetadata, format: "json" | "csv"): string {
  const t = meta.targets!;
  const v = Array.from(out, (x, j) => x * t.std[j]! + t.mean[j]!);
  if (format === "csv") return [String(index), ...v.map((x) => x.toPrecision(8))].join(",");
  return JSON.stringify({ index, values: Object.fromEntries(t.names.map((n, j) => [n, v[j]!])) });
}
