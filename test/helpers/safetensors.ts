/**
 * A minimal, independent safetensors reader for tests (format: 8-byte little-endian header
 * length, JSON header `{name: {dtype, shape, data_offsets}, __metadata__}`, raw little-endian data).
 * Used to read fixture inputs/expected outputs without going through the library under test.
 */
import { readFileSync } from "node:fs";

export interface StTensor {
  dtype: string;
  shape: number[];
  /** F32 values as Float32Array, I64 as numbers (tests only use small integers). */
  data: Float32Array | number[];
}

export interface StFile {
  bytes: Uint8Array;
  tensors: Map<string, StTensor>;
  metadata: Record<string, string>;
}

export function readSafetensors(path: string): StFile {
  const bytes = new Uint8Array(readFileSync(path));
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  const { __metadata__, ...header } = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  const metadata = (__metadata__ ?? {}) as Record<string, string>;
  const base = 8 + n;
  const tensors = new Map<string, StTensor>();
  for (const [name, info] of Object.entries(header as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>)) {
    const [start, end] = info.data_offsets as [number, number];
    const raw = bytes.slice(base + start, base + end);
    const view = new DataView(raw.buffer);
    let data: Float32Array | number[];
    if (info.dtype === "F32") {
      data = new Float32Array(raw.buffer, 0, (end - start) / 4);
    } else if (info.dtype === "I64") {
      data = Array.from({ length: (end - start) / 8 }, (_, i) => Number(view.getBigInt64(i * 8, true)));
    } else {
      continue; // not needed by the tests
    }
    tensors.set(name, { dtype: info.dtype, shape: info.shape, data });
  }
  return { bytes, tensors, metadata };
}

/** Largest absolute difference between two equally long arrays (NaN counts as infinite). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export { randomData } from "./random.js";
