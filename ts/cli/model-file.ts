/**
 * The CLI's additions to a saved model file: the preprocessing and label names that `gqa eval`
 * and `gqa predict` need, stored as one safetensors metadata entry `gqa_cli` (a JSON string) next
 * to the core's `gqa_config`, so that `model.safetensors` alone reproduces training's inputs.
 *
 * safetensors layout (huggingface/safetensors, "Format"): 8-byte little-endian header length N,
 * N bytes of JSON (`{"__metadata__": {str: str}, "<tensor>": {dtype, shape, data_offsets}}`,
 * may end in spaces), then the tensor data; offsets are relative to the data start, so a new
 * header does not move any tensor.
 */
import { DataFormatError } from "../data/errors.js";

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

/** Returns a copy of `bytes` with metadata `key` set to `value`; tensors are unchanged. @throws {DataFormatError} */
export function setMetadata(bytes: Uint8Array, key: string, value: string, file = "<model>"): Uint8Array {
  const { header, dataStart } = readHeader(bytes, file);
  const meta = { ...((header["__metadata__"] as Record<string, string> | undefined) ?? {}), [key]: value };
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
 * Reads the CLI record of a model file.
 * @throws {DataFormatError} when the file is not safetensors, has no `gqa_cli` entry (not written by
 *   `gqa train`), or the entry is malformed.
 */
export function readCliMetadata(bytes: Uint8Array, file: string): CliMetadata {
  const raw = readMetadata(bytes, file)[CLI_METADATA_KEY];
  if (raw === undefined) {
    throw new DataFormatError(file, undefined, `no '${CLI_METADATA_KEY}' metadata: this model was not written by \`gqa train\` (class labels and input standardisation unknown)`);
  }
  let m: CliMetadata;
  try {
    m = JSON.parse(raw) as CliMetadata;
  } catch {
    throw new DataFormatError(file, undefined, `'${CLI_METADATA_KEY}' metadata is not JSON`);
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
    (m.task !== "regression" ||
      (Array.isArray(m.targets?.names) &&
        m.targets.names.length >= 1 &&
        m.targets.mean?.length === m.targets.names.length &&
        m.targets.std?.length === m.targets.names.length));
  if (!ok) throw new DataFormatError(file, undefined, `'${CLI_METADATA_KEY}' metadata is malformed (expected version 1 with task, classLabels, channels, standardize.mean/std and, for regression, targets)`);
  return m;
}
