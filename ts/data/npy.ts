/**
 * Minimal reader for NumPy `.npy` files holding float32/float64 arrays.
 *
 * Format (NumPy NEP 1, "A simple file format for NumPy arrays", versions 1.0, 2.0, 3.0):
 * magic `\x93NUMPY`, major and minor version bytes, header length (uint16 LE for v1, uint32 LE for
 * v2/v3), an ASCII/UTF-8 Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (T, C), }`
 * padded with spaces and a newline, then the raw data.
 *
 * Written here rather than taken from npm: `npyjs` 1.2.0 (the maintained parser) does not check that
 * the data is as long as the shape says (a truncated file silently yields fewer values) and pulls
 * `cross-fetch`/`node-fetch` into a Node CLI; this reader is ~100 lines and checks every field.
 */
import { DataFormatError, readFileOrThrow } from "./errors.js";

/** A float array read from `.npy`, converted to float32 C (row-major) order. */
export interface NpyArray {
  /** Values in C order, float32. */
  data: Float32Array;
  /** The array shape from the header. */
  shape: number[];
  /** The stored dtype, `"f4"` or `"f8"`. */
  dtype: "f4" | "f8";
}

/**
 * Parses the bytes of an `.npy` file.
 *
 * Accepts `descr` `<f4`, `<f8`, `>f4`, `>f8` (and `=`/`|` as little endian), C or Fortran order, any
 * rank (callers check the rank). float64 values are rounded to float32; values outside float32
 * range or non-finite values are rejected.
 *
 * @param file name used in error messages.
 * @throws {DataFormatError} (with `line` undefined) for a bad magic, version, header, dtype, shape,
 *   truncated data or a non-finite value (named by its index).
 */
export function parseNpy(bytes: Uint8Array, file = "<input>"): NpyArray {
  const fail = (problem: string): never => {
    throw new DataFormatError(file, undefined, problem);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
  if (bytes.length < 10 || magic.some((m, i) => bytes[i] !== m)) fail("not an .npy file (missing the \\x93NUMPY magic)");
  const major = bytes[6]!;
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) fail("truncated header");
    headerLen = view.getUint32(8, true);
    headerStart = 12;
  } else {
    return fail(`unsupported .npy format version ${major}.${bytes[7]} (expected 1.x, 2.x or 3.x)`);
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > bytes.length) fail(`truncated header: says ${headerLen} bytes, file has ${bytes.length - headerStart}`);
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(headerStart, dataStart)).trim();

  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(header)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    return fail(`malformed header (expected 'descr', 'fortran_order' and 'shape'): ${header.slice(0, 120)}`);
  }
  const m = /^([<>=|])?(f4|f8)$/.exec(descr);
  if (!m) return fail(`unsupported dtype '${descr}' (expected float32 '<f4' or float64 '<f8')`);
  const little = m[1] !== ">";
  const dtype = m[2] as "f4" | "f8";
  const dims = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (dims.some((d) => !/^\d+$/.test(d))) fail(`malformed shape (${shapeText})`);
  const shape = dims.map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const item = dtype === "f4" ? 4 : 8;
  const need = count * item;
  const have = bytes.length - dataStart;
  if (have < need) fail(`truncated data: shape (${shape.join(", ")}) ${dtype} needs ${need} bytes, file has ${have}`);
  if (have > need) fail(`${have - need} trailing bytes after the data of shape (${shape.join(", ")})`);

  const raw = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const v = dtype === "f4" ? view.getFloat32(dataStart + 4 * i, little) : view.getFloat64(dataStart + 8 * i, little);
    if (!Number.isFinite(v) || Math.abs(v) > 3.4028234663852886e38) {
      // The element's index in the array (the file stores C or Fortran order).
      const at = shape.map((_, d) => {
        let stride = 1;
        if (fortran === "False") for (let e = d + 1; e < shape.length; e++) stride *= shape[e]!;
        else for (let e = 0; e < d; e++) stride *= shape[e]!;
        return Math.floor(i / stride) % shape[d]!;
      });
      fail(`non-finite or out-of-float32-range value ${v} at index [${at.join(", ")}] (flat index ${i})`);
    }
    raw[i] = v;
  }
  if (fortran === "False" || shape.length < 2) return { data: raw, shape, dtype };
  // Fortran order: first index varies fastest. Convert to C order.
  const out = new Float32Array(count);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  const fStride = new Array<number>(rank);
  fStride[0] = 1;
  for (let d = 1; d < rank; d++) fStride[d] = fStride[d - 1]! * shape[d - 1]!;
  for (let ci = 0; ci < count; ci++) {
    let fi = 0;
    for (let d = 0; d < rank; d++) fi += idx[d]! * fStride[d]!;
    out[ci] = raw[fi]!;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d] = idx[d]! + 1;
      if (idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return { data: out, shape, dtype };
}

/**
 * Reads and parses an `.npy` file (Node only).
 * @throws {DataNotFoundError} for a missing file; {@link DataFormatError} as {@link parseNpy}.
 */
export async function readNpy(path: string): Promise<NpyArray> {
  return parseNpy(await readFileOrThrow(path), path);
}

/** Arrays {@link encodeNpy} writes: float32 (`<f4`) or int64 (`<i8`). */
export type NpyWritable = Float32Array | BigInt64Array;

/**
 * Encodes an array as an `.npy` file (NEP 1 format version 1.0): magic, version `1.0`, uint16 LE
 * header length, the header dict `{'descr': '<f4'|'<i8', 'fortran_order': False, 'shape': (...), }`
 * padded with spaces and ending in a newline so that the data starts at a multiple of 64 bytes,
 * then the values little-endian in C order (NumPy's `np.save` layout; `np.load` reads it).
 *
 * @param data `Float32Array` (`<f4`) or `BigInt64Array` (`<i8`), C order.
 * @param shape the array shape; its product must equal `data.length`.
 * @throws {RangeError} when the shape does not match the data or a dimension is not a
 *   non-negative integer.
 */
export function encodeNpy(data: NpyWritable, shape: readonly number[]): Uint8Array {
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new RangeError(`shape must hold integers >= 0, found (${shape.join(", ")})`);
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new RangeError(`shape (${shape.join(", ")}) holds ${count} values, data has ${data.length}`);
  const descr = data instanceof Float32Array ? "<f4" : "<i8";
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  const pre = 10; // magic (6) + version (2) + header length (2)
  header += " ".repeat((64 - ((pre + header.length + 1) % 64)) % 64) + "\n";
  const out = new Uint8Array(pre + header.length + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[pre + i] = header.charCodeAt(i);
  const view = new DataView(out.buffer, pre + header.length);
  if (data instanceof Float32Array) data.forEach((v, i) => view.setFloat32(4 * i, v, true));
  else data.forEach((v, i) => view.setBigInt64(8 * i, v, true));
  return out;
}
