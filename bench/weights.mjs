// Weights and inputs shared by every implementation in the benchmark.
//
// gqa writes its weights as safetensors (`model.save()`): an 8-byte little-endian header length,
// a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__: {...}}`, then
// the raw little-endian tensor bytes (format: https://github.com/huggingface/safetensors). The
// header is tiny and every tensor gqa writes is F32, so the parser below is a few lines; it is
// what the ONNX graph builder and the TensorFlow.js twin read their weights from.

/** Parses safetensors bytes: `{tensors: Map<name, {shape, data: Float32Array}>, metadata}` (F32 only). */
export function parseSafetensors(bytes) {
  const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (8 + n > buf.byteLength) throw new Error(`safetensors: header length ${n} exceeds the file (${buf.byteLength} bytes)`);
  const header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + n)));
  const base = 8 + n;
  const tensors = new Map();
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (info.dtype !== "F32") throw new Error(`safetensors: ${name} is ${info.dtype}; the benchmark reads F32 only`);
    const [b, e] = info.data_offsets;
    const count = info.shape.reduce((a, d) => a * d, 1);
    if (e - b !== count * 4) throw new Error(`safetensors: ${name} has ${e - b} bytes for shape [${info.shape}]`);
    // copy: the slice may be unaligned for a Float32Array view
    const data = new Float32Array(count);
    new Uint8Array(data.buffer).set(buf.subarray(base + b, base + e));
    tensors.set(name, { shape: info.shape, data });
  }
  return { tensors, metadata: header.__metadata__ ?? {} };
}

/** Deterministic pseudo-random input in [-0.5, 0.5) (the same LCG as bench/forward-peers.mjs). */
export function makeInput(count, seed = 1) {
  const x = new Float32Array(count);
  let s = seed;
  for (let i = 0; i < count; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    x[i] = s / 2147483648 - 0.5;
  }
  return x;
}

/** Largest absolute elementwise difference (Infinity on a length mismatch, NaN if either has NaN). */
export function maxAbsDiff(a, b) {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return NaN;
    if (d > m) m = d;
  }
  return m;
}

/** `W [out, in]` (PyTorch layout) -> `W^T [in, out]` (what `x @ W^T` needs as a right operand). */
export function transpose2d(data, rows, cols) {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = data[r * cols + c];
  return t;
}
