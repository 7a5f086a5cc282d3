// The gqa model (SPEC.md section 2) as an ONNX graph of standard operators, built from the same
// weights gqa saved, for the onnxruntime-node and onnxruntime-web peers of `npm run bench`.
//
// Sources:
// - Message and field numbers: onnx/onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto);
//   the schema below is the subset this builder writes, with the same names and numbers, encoded
//   with protobufjs (a dependency of onnxruntime-web).
// - Operators, opset 17 (https://onnx.ai/onnx/operators/): MatMul, Add, Mul, LayerNormalization
//   (since 17), Erf, Reshape, Transpose, Unsqueeze (axes as an input since 13), Tile, Softmax (axis
//   -1), Shape, Gather, Range, Greater, Where, ReduceMean (axes attribute until 18).
// - Graph shape, as the peer is defined for the benchmark: MatMul + Add per linear with the
//   weight transposed to [in, out]; LayerNormalization axis -1, epsilon 1e-5; exact GELU written
//   as 0.5*x*(1+Erf(x/sqrt(2))) (onnxruntime fuses it at graphOptimizationLevel 'all'); K and V
//   repeated to the query heads with Tile (query head i reads KV head floor(i/group), SPEC
//   section 2); causal mask as an additive constant (-1e9, as Edifice) before Softmax; Gather
//   of the last position. No contrib ops (com.microsoft.GroupQueryAttention is not used).
// - Rotary embeddings are not in the graph (the bench workloads use rope: false); the builder
//   refuses a config with rope or yarn.
//
// The sequence length is symbolic (dims "B" and "T"): the mask is computed in the graph from
// Shape(x), so one graph serves every T.
import protobuf from "protobufjs";
import { transpose2d } from "./weights.mjs";

const SCHEMA = `
syntax = "proto2";
package onnx;
message AttributeProto {
  enum AttributeType { UNDEFINED = 0; FLOAT = 1; INT = 2; STRING = 3; TENSOR = 4; GRAPH = 5; FLOATS = 6; INTS = 7; STRINGS = 8; }
  optional string name = 1;
  optional AttributeType type = 20;
  optional float f = 2;
  optional int64 i = 3;
  optional bytes s = 4;
  optional TensorProto t = 5;
  repeated float floats = 7;
  repeated int64 ints = 8;
}
message ValueInfoProto { optional string name = 1; optional TypeProto type = 2; }
message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  optional string name = 3;
  optional string op_type = 4;
  optional string domain = 7;
  repeated AttributeProto attribute = 5;
}
message OperatorSetIdProto { optional string domain = 1; optional int64 version = 2; }
message ModelProto {
  optional int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  optional string producer_name = 2;
  optional string producer_version = 3;
  optional string doc_string = 6;
  optional GraphProto graph = 7;
}
message GraphProto {
  repeated NodeProto node = 1;
  optional string name = 2;
  repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
}
message TensorProto {
  repeated int64 dims = 1;
  optional int32 data_type = 2;
  optional string name = 8;
  optional bytes raw_data = 9;
}
message TensorShapeProto {
  message Dimension { oneof value { int64 dim_value = 1; string dim_param = 2; } }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor { optional int32 elem_type = 1; optional TensorShapeProto shape = 2; }
  oneof value { Tensor tensor_type = 1; }
}
`;

const FLOAT = 1; // TensorProto.DataType
const INT64 = 7;
const ATTR = { FLOAT: 1, INT: 2, INTS: 7 };
/** IR version 8 is the one that goes with opset 17 (onnx 1.12). */
const IR_VERSION = 8;
export const OPSET = 17;

let modelType;
function ModelProto() {
  modelType ??= protobuf.parse(SCHEMA, { keepCase: true }).root.lookupType("onnx.ModelProto");
  return modelType;
}

/**
 * Builds the ONNX model bytes.
 * @param cfg the gqa config (model.config: embedDim, hiddenSize, numHeads, numKvHeads, numLayers, outputMode)
 * @param tensors Map name -> {shape, data: Float32Array} with the canonical names (SPEC section 3)
 * @returns {Uint8Array} a ModelProto with input `x` [B, T, embedDim] and output `y`
 */
export function buildOnnxModel(cfg, tensors) {
  if (cfg.rope || cfg.yarn) throw new Error("onnx-graph: rotary embeddings are not in the benchmark graph (use rope: false)");
  const E = cfg.embedDim, H = cfg.hiddenSize, NH = cfg.numHeads, NKV = cfg.numKvHeads, L = cfg.numLayers;
  const D = H / NH, G = NH / NKV;
  const nodes = [];
  const inits = [];
  let counter = 0;
  const fresh = (p) => `${p}_${counter++}`;

  const tensorInit = (name, dims, type, bytes) => inits.push({ name, dims, data_type: type, raw_data: bytes });
  const f32 = (name, dims, data) => {
    const a = data instanceof Float32Array ? data : Float32Array.from(data);
    tensorInit(name, dims, FLOAT, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    return name;
  };
  const i64 = (name, dims, values) => {
    const a = BigInt64Array.from(values.map((v) => BigInt(v)));
    tensorInit(name, dims, INT64, new Uint8Array(a.buffer));
    return name;
  };
  // attributes here are all integers or integer lists (LayerNormalization's float epsilon is set below)
  const node = (op, inputs, attrs = {}, out = fresh(op.toLowerCase())) => {
    const attribute = Object.entries(attrs).map(([name, v]) => (Array.isArray(v) ? { name, type: ATTR.INTS, ints: v } : { name, type: ATTR.INT, i: v }));
    nodes.push({ op_type: op, input: inputs, output: [out], name: out, attribute });
    return out;
  };
  const weight = (name) => {
    const t = tensors.get(name);
    if (!t) throw new Error(`onnx-graph: missing tensor ${name}`);
    return t;
  };
  // x @ W^T + b, with W [out, in] stored transposed as [in, out]
  const linear = (x, prefix) => {
    const w = weight(`${prefix}.weight`), b = weight(`${prefix}.bias`);
    const [out, inp] = w.shape;
    const y = node("MatMul", [x, f32(`${prefix}.weight_t`, [inp, out], transpose2d(w.data, out, inp))]);
    return node("Add", [y, f32(`${prefix}.bias`, [out], b.data)]);
  };
  const layerNorm = (x, prefix) => {
    const g = f32(`${prefix}.weight`, [H], weight(`${prefix}.weight`).data);
    const b = f32(`${prefix}.bias`, [H], weight(`${prefix}.bias`).data);
    const out = `${prefix}.out`;
    nodes.push({ op_type: "LayerNormalization", input: [x, g, b], output: [out], name: out, attribute: [{ name: "axis", type: ATTR.INT, i: -1 }, { name: "epsilon", type: ATTR.FLOAT, f: 1e-5 }] });
    return out;
  };

  // shared constants
  const cQ = i64("shape_q", [4], [0, 0, NH, D]);
  const cKV = i64("shape_kv", [4], [0, 0, NKV, D]);
  const cO = i64("shape_o", [3], [0, 0, H]);
  const cKrep = i64("shape_k_rep", [4], [0, NH, D, -1]); // [B, NH, D, T]
  const cVrep = i64("shape_v_rep", [4], [0, NH, -1, D]); // [B, NH, T, D]
  const cAx2 = i64("axes_2", [1], [2]);
  const cTile = i64("tile_group", [5], [1, 1, G, 1, 1]);
  const cScale = f32("attn_scale", [], [1 / Math.sqrt(D)]);
  const cInvSqrt2 = f32("inv_sqrt2", [], [Math.SQRT1_2]);
  const cOne = f32("one", [], [1]);
  const cHalf = f32("half", [], [0.5]);

  // causal mask [T, T]: -1e9 where key j > query i, else 0 (computed from T = shape(x)[1])
  const shape = node("Shape", ["x"]);
  const T = node("Gather", [shape, i64("idx_1", [], [1])], { axis: 0 });
  const pos = node("Range", [i64("zero_i64", [], [0]), T, i64("one_i64", [], [1])]);
  const rows = node("Unsqueeze", [pos, i64("axes_1", [1], [1])]);
  const cols = node("Unsqueeze", [pos, i64("axes_0", [1], [0])]);
  const future = node("Greater", [cols, rows]);
  const mask = node("Where", [future, f32("neg_big", [], [-1e9]), f32("zero_f32", [], [0])]);

  // GQA: [B, NKV, a, b] -> [B, NH, a, b], query head i reading KV head floor(i / G)
  const repeatKv = (t, shapeRep) => {
    if (G === 1) return t;
    const u = node("Unsqueeze", [t, cAx2]); // [B, NKV, 1, a, b]
    const tiled = node("Tile", [u, cTile]); // [B, NKV, G, a, b]
    return node("Reshape", [tiled, shapeRep]);
  };

  let h = "x";
  if (E !== H) h = linear(h, "input_projection");
  for (let l = 0; l < L; l++) {
    const p = `blocks.${l}`;
    const a = layerNorm(h, `${p}.attn_norm`);
    const q = node("Transpose", [node("Reshape", [linear(a, `${p}.attn.q_proj`), cQ])], { perm: [0, 2, 1, 3] }); // [B,NH,T,D]
    const kT = node("Transpose", [node("Reshape", [linear(a, `${p}.attn.k_proj`), cKV])], { perm: [0, 2, 3, 1] }); // [B,NKV,D,T]
    const v = node("Transpose", [node("Reshape", [linear(a, `${p}.attn.v_proj`), cKV])], { perm: [0, 2, 1, 3] }); // [B,NKV,T,D]
    const scores = node("Add", [node("MatMul", [node("Mul", [q, cScale]), repeatKv(kT, cKrep)]), mask]); // [B,NH,T,T]
    const probs = node("Softmax", [scores], { axis: -1 });
    const o = node("MatMul", [probs, repeatKv(v, cVrep)]); // [B,NH,T,D]
    const o2 = node("Reshape", [node("Transpose", [o], { perm: [0, 2, 1, 3] }), cO]); // [B,T,H]
    h = node("Add", [h, linear(o2, `${p}.attn.out_proj`)]);
    const f = layerNorm(h, `${p}.ffn_norm`);
    const u = linear(f, `${p}.ffn_up`);
    const gelu = node("Mul", [node("Mul", [u, node("Add", [node("Erf", [node("Mul", [u, cInvSqrt2])]), cOne])]), cHalf]);
    h = node("Add", [h, linear(gelu, `${p}.ffn_down`)]);
  }
  h = layerNorm(h, "final_norm");
  const mode = cfg.outputMode ?? "last_timestep";
  let outDims;
  if (mode === "last_timestep") {
    node("Gather", [h, i64("idx_last", [], [-1])], { axis: 1 }, "y");
    outDims = [{ dim_param: "B" }, { dim_value: H }];
  } else if (mode === "mean_pool") {
    node("ReduceMean", [h], { axes: [1], keepdims: 0 }, "y");
    outDims = [{ dim_param: "B" }, { dim_value: H }];
  } else {
    node("Identity", [h], {}, "y");
    outDims = [{ dim_param: "B" }, { dim_param: "T" }, { dim_value: H }];
  }

  const vi = (name, dim) => ({ name, type: { tensor_type: { elem_type: FLOAT, shape: { dim } } } });
  const model = {
    ir_version: IR_VERSION,
    opset_import: [{ domain: "", version: OPSET }],
    producer_name: "gqa-bench",
    producer_version: "1",
    doc_string: `gqa model (SPEC.md section 2) E=${E} H=${H} heads ${NH}/${NKV} layers ${L} output ${mode}; standard ops only`,
    graph: {
      name: "gqa",
      node: nodes,
      initializer: inits,
      input: [vi("x", [{ dim_param: "B" }, { dim_param: "T" }, { dim_value: E }])],
      output: [vi("y", outDims)],
    },
  };
  const M = ModelProto();
  const err = M.verify(model);
  if (err) throw new Error(`onnx-graph: ${err}`);
  return M.encode(M.fromObject(model)).finish();
}

/** `y = a @ b` with `a` an input [n, n] and `b` a constant [n, n] (the GEMM peak measurement). */
export function buildMatMulModel(n, b) {
  const vi = (name) => ({ name, type: { tensor_type: { elem_type: FLOAT, shape: { dim: [{ dim_value: n }, { dim_value: n }] } } } });
  const model = {
    ir_version: IR_VERSION,
    opset_import: [{ domain: "", version: OPSET }],
    producer_name: "gqa-bench",
    graph: {
      name: "sgemm",
      node: [{ op_type: "MatMul", input: ["a", "b"], output: ["y"], name: "matmul" }],
      initializer: [{ name: "b", dims: [n, n], data_type: FLOAT, raw_data: new Uint8Array(b.buffer, b.byteOffset, b.byteLength) }],
      input: [vi("a")],
      output: [vi("y")],
    },
  };
  const M = ModelProto();
  return M.encode(M.fromObject(model)).finish();
}
