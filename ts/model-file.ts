/**
 * Shared by the CLI (`gqa train/eval/predict`) and the demo page: no Node-only imports.
 *
 * The CLI's additions to a saved model file: the preprocessing and label names that `gqa eval`
 * and `gqa predict` need, stored as one safetensors metadata entry `gqa_cli` (a JSON string) next
 * to the core's `gqa_config`, so that `model.safetensors` alone reproduces training's inputs.
 *
 * safetensors layout (huggingface/safetensors, "Format"): 8-byte little-endian header length N,
 * N bytes of JSON (`{"__metadata__": {str: str}, "<tensor>": {dtype, shape, data_offsets}}`,
 * may end in spaces), then the tensor data; offsets are relative to the data start, so a new
 * header does not move any tensor.
 */
import { DataFormatError } from "./data/errors.js";
import { GqaError } from "./errors.js";
import { applyTransform, IDENTITY_SPEC, type InputTransform, type TransformSpec } from "./data/transform.js";

/** What `gqa train` records about the data a model was trained on. */
export interface CliMetadata {
  /** Format version of this record, 1. */
  version: 1;
  /** The head's task. */
  task: "classification" | "regression";
  /** Dataset name (`japanese-vowels`, ...). */
  dataset: string;
  /** Class names; output index `k` is `classLabels[k]` (empty for regression). */
  classLabels: string[];
  /**
   * Regression: the target names and the statistics the targets were standardised with for
   * training (`(y - mean) / std`); predictions are mapped back with `y = out * std + mean`.
   */
  targets?: { names: string[]; mean: number[]; std: number[] };
  /** Channels `C` (= the model's `embedDim`). */
  channels: number;
  /** Per-channel statistics of the training split, applied as `(x - mean) / std` before the model. */
  standardize: { mean: number[]; std: number[] };
  /**
   * Instance normalisation and patch length applied after `standardize` (ts/data/transform.ts);
   * absent: neither (files written before `--recipe auto`). The model's `embedDim` is
   * `channels * transform.patch`.
   */
  transform?: TransformSpec;
}

/** The whole input transform of a `gqa train` model file's record (ts/data/transform.ts). */
export function cliTransform(meta: CliMetadata): InputTransform {
  return { ...(meta.transform ?? IDENTITY_SPEC), standardize: meta.standardize };
}

/**
 * Raw cases (each `[T_i * C]`, time-major, `C = meta.channels`) as the inputs of the model of
 * `meta`: the record's standardisation, instance normalisation and patching (ts/data/transform.ts).
 * Pad the result with `padBatch(out, meta.channels * patch)`. Exported as `modelInputs` from `gqa`.
 * @throws {RangeError} when a case's length is not a multiple of `C`.
 */
export function modelInputs(series: readonly Float32Array[], meta: CliMetadata): { series: Float32Array[]; width: number } {
  const t = cliTransform(meta);
  return { series: applyTransform(series, t), width: meta.channels * t.patch };
}

/** The metadata key. */
export const CLI_METADATA_KEY = "gqa_cli";

function readHeader(bytes: Uint8Array, file: string): { header: Record<string, unknown>; dataStart: number } {
  if (bytes.length < 8) throw new DataFormatError(file, undefined, `not a safetensors file: ${bytes.length} bytes, shorter than the 8-byte header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8)) throw new DataFormatError(file, undefined, `not a safetensors file: header length ${n} exceeds the file (${bytes.length} bytes)`);
  const dataStart = 8 + Number(n);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, dataStart)));
  } catch (e) {
    throw new DataFormatError(file, undefined, `not a safetensors file: header is not JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new DataFormatError(file, undefined, "not a safetensors file: header is not a JSON object");
  }
  return { header: header as Record<string, unknown>, dataStart };
}

/** The `__metadata__` map of a safetensors file (empty when absent). @throws {DataFormatError} */
export function readMetadata(bytes: Uint8Array, file = "<model>"): Record<string, string> {
  const m = readHeader(bytes, file).header["__metadata__"];
  return typeof m === "object" && m !== null ? (m as Record<string, string>) : {};
}

/**
 * Returns a copy of `bytes` with metadata `key` set to `value`; tensors are unchanged. The
 * metadata keys are written in sorted order (the core's writer keeps them in a hash map, whose
 * order changes from process to process), so the same model and metadata give the same bytes.
 * @throws {DataFormatError}
 */
export function setMetadata(bytes: Uint8Array, key: string, value: string, file = "<model>"): Uint8Array {
  const { header, dataStart } = readHeader(bytes, file);
  const all: Record<string, string> = { ...((header["__metadata__"] as Record<string, string> | undefined) ?? {}), [key]: value };
  const meta = Object.fromEntries(Object.keys(all).sort().map((k) => [k, all[k]!]));
  // Keep __metadata__ first, as the reference writer does.
  const { __metadata__: _old, ...tensors } = header;
  let json = JSON.stringify({ __metadata__: meta, ...tensors });
  const enc = new TextEncoder();
  let len = enc.encode(json).length;
  while ((8 + len) % 8 !== 0) {
    json += " ";
    len++;
  }
  const head = enc.encode(json);
  const out = new Uint8Array(8 + head.length + (bytes.length - dataStart));
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(bytes.subarray(dataStart), 8 + head.length);
  return out;
}

/** Stores the CLI record in a saved model. */
export function withCliMetadata(bytes: Uint8Array, meta: CliMetadata): Uint8Array {
  return setMetadata(bytes, CLI_METADATA_KEY, JSON.stringify(meta));
}

/**
 * Reads the CLI record of a model file written by `gqa train`: class names, and the per-channel
 * `standardize.mean`/`std` its inputs must be standardised with, `(x - mean[c]) / std[c]`, before
 * `predict` (`gqa eval`/`predict` do this). Exported as `readCliMetadata` from `gqa`.
 * @throws {DataFormatError} when the file is not safetensors, has no `gqa_cli` entry (not written by
 *   `gqa train`), or the entry is malformed.
 */
export function readCliMetadata(bytes: Uint8Array, file: string): CliMetadata {
  const m = jsonMetadata(readMetadata(bytes, file), CLI_METADATA_KEY, file) as CliMetadata | undefined;
  if (m === undefined) {
    throw new DataFormatError(file, undefined, `no '${CLI_METADATA_KEY}' metadata: this model was not written by \`gqa train\` (class labels and input standardisation unknown)`);
  }
  const ok =
    m &&
    m.version === 1 &&
    Array.isArray(m.classLabels) &&
    Number.isInteger(m.channels) &&
    Array.isArray(m.standardize?.mean) &&
    Array.isArray(m.standardize?.std) &&
    m.standardize.mean.length === m.channels &&
    m.standardize.std.length === m.channels &&
    (m.transform === undefined || (Number.isInteger(m.transform.patch) && m.transform.patch >= 1 && typeof m.transform.instanceNorm === "boolean")) &&
    (m.task !== "regression" ||
      (Array.isArray(m.targets?.names) &&
        m.targets.names.length >= 1 &&
        m.targets.mean?.length === m.targets.names.length &&
        m.targets.std?.length === m.targets.names.length));
  if (!ok) throw new DataFormatError(file, undefined, `'${CLI_METADATA_KEY}' metadata is malformed (expected version 1 with task, classLabels, channels, standardize.mean/std, an optional transform {instanceNorm, patch >= 1} and, for regression, targets)`);
  return m;
}

/** Metadata entry `key` parsed as JSON (undefined when absent). @throws {DataFormatError} when it is not JSON. */
function jsonMetadata(meta: Record<string, string>, key: string, file: string): unknown {
  const raw = meta[key];
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    throw new DataFormatError(file, undefined, `'${key}' metadata is not JSON`);
  }
}

/** The core's options metadata key (`gqa_core::weights::CONFIG_METADATA_KEY`). */
const CONFIG_KEY = "gqa_config";

/** The core's head metadata key. */
const HEAD_KEY = "gqa_head";

/** Metadata key of an ensemble file: the number of members, as a decimal string. */
export const ENSEMBLE_METADATA_KEY = "gqa_ensemble";

/** The most members an ensemble file may hold (its readers refuse more; `gqa train --ensemble` too). */
export const MAX_ENSEMBLE_MEMBERS = 1000;

/** Members of an ensemble file (`gqa_ensemble`; 1 without it). @throws {DataFormatError} for a count outside 1..{@link MAX_ENSEMBLE_MEMBERS}. */
function ensembleSize(meta: Record<string, string>, file: string): number {
  const raw = meta[ENSEMBLE_METADATA_KEY];
  if (raw === undefined) return 1;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_ENSEMBLE_MEMBERS) throw new DataFormatError(file, undefined, `'${ENSEMBLE_METADATA_KEY}' metadata must be a member count in [1, ${MAX_ENSEMBLE_MEMBERS}], found '${raw}'`);
  return n;
}

/** What a saved model file says of itself, without reading its tensors (`gqa info --model`). */
export interface ModelFileSummary {
  /** The model options (`gqa_config`; member 0's in an ensemble file). */
  options: Record<string, unknown>;
  /** The head's options (`gqa_head`), or null for a model without a head. */
  head: unknown;
  /** Number of members (`gqa_ensemble`; 1 for a single model). */
  members: number;
}

/**
 * Reads the {@link ModelFileSummary} of a model file saved by `model.save` or `gqa train`.
 * @throws {DataFormatError} for a file that is not safetensors, has no `gqa_config` object, or
 *   has malformed metadata.
 */
export function readModelSummary(bytes: Uint8Array, file: string): ModelFileSummary {
  const meta = readMetadata(bytes, file);
  const options = jsonMetadata(meta, CONFIG_KEY, file);
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new DataFormatError(file, undefined, `no '${CONFIG_KEY}' metadata object: not a model file saved by gqa (gqa train, model.save)`);
  }
  return { options: options as Record<string, unknown>, head: jsonMetadata(meta, HEAD_KEY, file) ?? null, members: ensembleSize(meta, file) };
}

interface TensorEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Builds a safetensors file from a header object and the tensor data area. */
function buildFile(header: Record<string, unknown>, data: Uint8Array): Uint8Array {
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  while ((8 + enc.encode(json).length) % 8 !== 0) json += " ";
  const head = enc.encode(json);
  const out = new Uint8Array(8 + head.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(data, 8 + head.length);
  return out;
}

/**
 * Packs the saved files of `n >= 1` models of one architecture into one safetensors file: member
 * `j`'s tensor `name` becomes `ensemble.<j>.<name>` (its data appended after member `j - 1`'s), the
 * metadata is member 0's plus `gqa_ensemble = n` and, for `j >= 1`, member `j`'s own `gqa_config`
 * as `ensemble.<j>.gqa_config` (members differ in `seed`). With one member the file is returned unchanged.
 * Such a file is read by {@link unpackEnsemble} (the CLI's eval/predict, `GQA.loadEnsemble`);
 * `GQA.load` refuses it with `INVALID_INPUT` naming `GQA.loadEnsemble`.
 * @throws {DataFormatError} when a member is not a safetensors file.
 */
export function packEnsemble(members: readonly Uint8Array[]): Uint8Array {
  if (members.length === 1) return members[0]!;
  const header: Record<string, unknown> = {};
  const parts: Uint8Array[] = [];
  let base = 0;
  members.forEach((bytes, j) => {
    const { header: h, dataStart } = readHeader(bytes, `<member ${j}>`);
    const meta = (h["__metadata__"] as Record<string, string> | undefined) ?? {};
    if (j === 0) header["__metadata__"] = { ...meta, [ENSEMBLE_METADATA_KEY]: String(members.length) };
    // Each later member's own options (they differ in `seed`), restored by unpackEnsemble.
    const own = meta[CONFIG_KEY];
    if (j > 0 && own !== undefined) (header["__metadata__"] as Record<string, string>)[`ensemble.${j}.${CONFIG_KEY}`] = own;
    for (const [name, t] of Object.entries(h)) {
      if (name === "__metadata__") continue;
      const e = t as TensorEntry;
      header[`ensemble.${j}.${name}`] = { ...e, data_offsets: [e.data_offsets[0] + base, e.data_offsets[1] + base] };
    }
    const data = bytes.subarray(dataStart);
    parts.push(data);
    base += data.length;
  });
  const data = new Uint8Array(base);
  let o = 0;
  for (const p of parts) {
    data.set(p, o);
    o += p.length;
  }
  return buildFile(header, data);
}

/**
 * Splits an ensemble file written by {@link packEnsemble} into its members' safetensors files
 * (metadata without `gqa_ensemble`); a file without `gqa_ensemble` comes back as its only member.
 * @throws {DataFormatError} for a malformed count, a member with no tensors, or offsets outside the file.
 */
export function unpackEnsemble(bytes: Uint8Array, file = "<model>"): Uint8Array[] {
  const { header, dataStart } = readHeader(bytes, file);
  const meta = (header["__metadata__"] as Record<string, string> | undefined) ?? {};
  if (meta[ENSEMBLE_METADATA_KEY] === undefined) return [bytes];
  const n = ensembleSize(meta, file);
  const { [ENSEMBLE_METADATA_KEY]: _n, ...shared } = meta;
  const memberMeta = Object.fromEntries(Object.entries(shared).filter(([k]) => !k.startsWith("ensemble.")));
  const data = bytes.subarray(dataStart);
  return Array.from({ length: n }, (_, j) => {
    const prefix = `ensemble.${j}.`;
    const entries = Object.entries(header).filter(([k]) => k.startsWith(prefix)) as [string, TensorEntry][];
    if (entries.length === 0) throw new DataFormatError(file, undefined, `ensemble member ${j} of ${n} has no tensors (expected names '${prefix}*')`);
    const own = shared[`ensemble.${j}.${CONFIG_KEY}`];
    const h: Record<string, unknown> = { __metadata__: own === undefined ? memberMeta : { ...memberMeta, [CONFIG_KEY]: own } };
    let size = 0;
    for (const [, e] of entries) size += e.data_offsets[1] - e.data_offsets[0];
    const out = new Uint8Array(size);
    let o = 0;
    for (const [k, e] of entries) {
      const [a, b] = e.data_offsets;
      if (!(Number.isInteger(a) && Number.isInteger(b) && 0 <= a && a <= b && b <= data.length)) {
        throw new DataFormatError(file, undefined, `tensor '${k}': data_offsets [${a}, ${b}] outside the data (${data.length} bytes)`);
      }
      out.set(data.subarray(a, b), o);
      h[k.slice(prefix.length)] = { ...e, data_offsets: [o, o + (b - a)] };
      o += b - a;
    }
    return buildFile(h, out);
  });
}

/** What a model file is, as messages about a file that is not one say it. */
export const MODEL_FILE_DESCRIPTION = "a model file (a safetensors file written by model.save()/model.saveFile() or gqa train)";

/** Restated load errors ({@link asModelFileError}) and the core's error each restates. */
const restated = new WeakMap<object, GqaError>();

/**
 * A `MALFORMED_FILE` error of `GQA.load` / `GQA.loadEnsemble` restated for the caller: it names
 * the file when `source` is a path (else "the given bytes"), what a model file is, and the core's
 * message as what was found, e.g. `notes.txt: expected a model file (a safetensors file written
 * by model.save()/model.saveFile() or gqa train), found malformed safetensors file: header too
 * large`. Code and `reason` stay the core's. A restated error restated again (a load inside
 * `loadEnsemble`) names the outer source. Other errors are returned unchanged.
 * @internal
 */
export function asModelFileError(e: unknown, source: Uint8Array | string): unknown {
  const core = (typeof e === "object" && e !== null && restated.get(e)) || e;
  if (!GqaError.is(core, "MALFORMED_FILE")) return e;
  const who = typeof source === "string" ? source : "the given bytes";
  const out = new GqaError("MALFORMED_FILE", `${who}: expected ${MODEL_FILE_DESCRIPTION}, found ${core.message}`, { cause: core, fields: { reason: core.reason } });
  restated.set(out, core);
  return out;
}
