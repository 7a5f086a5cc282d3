//! ONNX export: the model (SPEC section 2, inference: no dropout) as one standard ONNX graph
//! (opset 17, standard `ai.onnx` operators only), weights inlined as initializers, for ONNX
//! Runtime and any other ONNX consumer.
//!
//! # The graph
//!
//! Inputs (symbolic axes `batch` and `seq`, so one file serves every batch size and length):
//! - `input`: float32 `[batch, seq, embedDim]`, sequences left-aligned;
//! - `lengths`: int64 `[batch]`, valid positions per row, `1 <= lengths[b] <= seq` (pass `seq`
//!   for unpadded rows). Values at positions `>= lengths[b]` do not matter (NaN included): they
//!   are replaced by zeros first, as gqa's forward does.
//!
//! Outputs:
//! - `output`: float32, the model's output mode (SPEC section 2): `last_timestep` ->
//!   `[batch, hiddenSize]` = `h[b, lengths[b]-1, :]`; `mean_pool` -> `[batch, hiddenSize]`, the
//!   mean over positions `< lengths[b]`; `all` -> `[batch, seq, hiddenSize]`, zeros at positions
//!   `>= lengths[b]`;
//! - with a classification head, `probabilities`: float32 `[batch, numClasses]`, softmax of
//!   `output W^T + b`; with a regression head, `values`: float32 `[batch, outDim]`,
//!   `output W^T + b`.
//!
//! Operators (ONNX operator docs, <https://onnx.ai/onnx/operators/>, opset 17): every linear is
//! `MatMul` by the transposed weight `[in, out]` + `Add` of the bias; LayerNorm is
//! `LayerNormalization` (axis -1, epsilon 1e-5); exact GELU is `0.5*x*(1+Erf(x/sqrt(2)))`
//! (onnxruntime fuses it); heads are `Reshape`/`Transpose`; query head `i` reads KV head
//! `floor(i / group)` by `Unsqueeze` + `Tile` + `Reshape` of K and V (SPEC section 2); the
//! attention mask (causal, keys `j >= lengths[b]`, and with `slidingWindow` keys `i - j >= W`)
//! is computed in the graph from `Shape(input)`
//! and `lengths` and added to the scores as 0 / -1e9 (Edifice's fill value) before `Softmax`.
//!
//! Rotary embeddings (SPEC section 5, half-rotation "rotate_half" convention) are computed in the
//! graph for positions `Range(0, seq)`: `angle = double(pos) * double(inv_freq)` (an f64
//! product, as the core), `cos`/`sin` of that angle evaluated in double and rounded to float (as
//! [`crate::rope::Rotary`]), times the attention factor (Hugging Face yarn), and applied as
//! `x * [cos, cos] + [x2, x1] * [-sin, sin]` = `concat(x1 cos - x2 sin, x1 sin + x2 cos)`.
//! `inv_freq` is a constant for plain RoPE, Edifice yarn and the Hugging Face types linear,
//! yarn and llama3; for `dynamic` it is recomputed in the graph from `seq` with transformers'
//! formula in the same f64/f32 steps as [`crate::rope::hf_inv_freq`]. No maximum length is
//! baked in.
//!
//! Metadata (`ModelProto.metadata_props`, onnxruntime's `session.metadata`): `gqa_config` (the
//! options JSON) and, with a head, `gqa_head`.

mod graph;
pub mod proto;
mod transform;

use candle_core::{DType, Var};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::config::{GqaConfig, OutputMode};
use crate::error::{Error, Result};
use crate::model::GqaModel;
use crate::rope::RopeScaling;
use crate::train::{Head, HeadConfig, TaskModel};
use graph::{float, int, ints, Graph};
use proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The ONNX operator set the graph is written for.
pub const OPSET: i64 = 17;
/// The ONNX IR version that goes with [`OPSET`] (onnx 1.12's).
pub const IR_VERSION: i64 = 8;
/// Name of the graph input `[batch, seq, embedDim]` (float32).
pub const INPUT: &str = "input";
/// Name of the graph input `[batch]` (int64): valid positions per row.
pub const LENGTHS: &str = "lengths";
/// Name of the model output (`[batch, hiddenSize]` or `[batch, seq, hiddenSize]`).
pub const OUTPUT: &str = "output";
/// Name of the class probabilities `[batch, numClasses]` of a classification head.
pub const PROBABILITIES: &str = "probabilities";
/// Name of the outputs `[batch, outDim]` of a regression head.
pub const VALUES: &str = "values";
/// The largest file protobuf can encode (2 GiB - 1 bytes): weights are inlined, so a model whose
/// parameters (plus graph) exceed it cannot be exported.
pub const MAX_FILE_BYTES: u64 = (1 << 31) - 1;
/// Room kept under [`MAX_FILE_BYTES`] for everything but the weights (nodes, names, constants).
const GRAPH_SLACK_BYTES: u64 = 1 << 20;

/// Options of [`export`] (JSON: `{}` or `{"inputTransform": {...}}`; unknown fields are refused
/// so that future ones are never silently ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct OnnxOptions {
    /// The input transform of a `gqa train` model, prepended to the graph (see [`InputTransform`]);
    /// absent: the graph takes the model's inputs as they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_transform: Option<InputTransform>,
}

/// The input transform of a `gqa train` model (`ts/data/transform.ts`, one rule for every
/// consumer), computed in the graph before the model: the graph input `input` is then the raw
/// series `[batch, steps, C]` with `lengths` raw steps, and, per valid step,
/// 1. `(x - mean[c]) / std[c]`;
/// 2. with `instanceNorm`, each channel of each row minus its mean over the row's `lengths[b]`
///    steps, divided by its population std (std below 1e-8: 1) (`ReduceSum` over masked steps);
/// 3. with `patch = P > 1`, the steps zero-padded at the end to a multiple of `P` (`Pad`) and
///    read as tokens of `P * C` features (`Reshape` to `[batch, ceil(steps / P), P * C]`), with
///    `ceil(lengths / P)` valid tokens.
///
/// Positions at or past `lengths[b]` are zeroed before and after each step, as the TypeScript
/// transform never sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InputTransform {
    /// Per-channel mean `[C]` of the training split.
    pub mean: Vec<f32>,
    /// Per-channel std `[C]` of the training split (each finite and > 0).
    pub std: Vec<f32>,
    /// Per-row, per-channel normalisation (step 2).
    #[serde(default)]
    pub instance_norm: bool,
    /// Patch length `P >= 1` (1: no patching); `C * P` must equal the model's `embedDim`.
    #[serde(default = "one_step")]
    pub patch: usize,
}

fn one_step() -> usize {
    1
}

impl InputTransform {
    /// Checks the transform against a model of `embed_dim` input features.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming `onnxOptions.inputTransform` with the expected and found
    /// value: empty or unequal `mean`/`std`, a std that is not finite and > 0, a non-finite mean,
    /// `patch` 0, or `C * patch != embedDim`.
    pub fn validate(&self, embed_dim: usize) -> Result<()> {
        let c = self.mean.len();
        let bad = |expected: String, found: String| {
            Err(Error::option("onnxOptions.inputTransform", expected, found))
        };
        if c == 0 || self.std.len() != c {
            return bad(
                "mean and std of the same length >= 1".into(),
                format!("{} and {}", c, self.std.len()),
            );
        }
        if let Some(v) = self.std.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return bad("std values finite and > 0".into(), format!("{v}"));
        }
        if let Some(v) = self.mean.iter().find(|v| !v.is_finite()) {
            return bad("finite mean values".into(), format!("{v}"));
        }
        if self.patch == 0 || c * self.patch != embed_dim {
            return bad(
                format!("patch >= 1 with channels * patch = embedDim ({embed_dim})"),
                format!("{c} channels * patch {}", self.patch),
            );
        }
        Ok(())
    }
}

impl OnnxOptions {
    /// Parses options JSON (`""` or `{}` = the defaults).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming `onnxOptions` or the unknown field.
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_value(crate::config::json_text(json, "onnxOptions")?)
    }

    /// [`OnnxOptions::from_json`] of options given as a structured value (`Value::Null` or `{}`
    /// = the defaults).
    ///
    /// # Errors
    /// As [`OnnxOptions::from_json`].
    pub fn from_value(value: serde_json::Value) -> Result<Self> {
        crate::config::parse_value(
            value,
            "onnxOptions",
            "onnxOptions.",
            "an ONNX export option (none are defined: pass {})",
        )
    }
}

/// Exports `model` (and its optional `head`) as ONNX `ModelProto` bytes (see the module doc for
/// the graph's inputs, outputs and operators). Weights are read under the model's read lock, so
/// an export never sees a half-applied training step.
///
/// # Errors
/// [`Error::InvalidOption`] naming `outputMode` for a head on `outputMode: "all"` (a head needs
/// `[batch, hiddenSize]`); [`Error::InvalidOption`] naming `parameters` when the weights exceed
/// what one protobuf file holds ([`MAX_FILE_BYTES`]); [`Error::OutOfMemory`] (`onnx export`)
/// when the copy of the weights does not fit under the memory budget ([`crate::memory`]);
/// [`Error::Backend`] reading the weights; [`Error::InvalidOption`] naming
/// `onnxOptions.inputTransform` for a transform that does not fit the model
/// ([`InputTransform::validate`]).
pub fn export(model: &GqaModel, head: Option<&Head>, opts: &OnnxOptions) -> Result<Vec<u8>> {
    let cfg = model.config();
    if let Some(t) = &opts.input_transform {
        t.validate(cfg.embed_dim)?;
    }
    if head.is_some() && cfg.output_mode == OutputMode::All {
        return Err(Error::option(
            "outputMode",
            "\"last_timestep\" or \"mean_pool\" when a head is attached",
            "\"all\"",
        ));
    }
    let head_elems = head.map_or(0, |h| h.weight.elem_count() + h.bias.elem_count()) as u64;
    let weight_bytes = (model.params().total_elements() as u64 + head_elems).saturating_mul(4);
    check_weight_bytes(weight_bytes)?;
    // The initializers and the encoded file: two copies of the weights.
    let _memory = crate::memory::reserve("onnx export", weight_bytes.saturating_mul(2))?;
    let _use = model.read_use();
    let mut b = Builder {
        g: Graph::default(),
        cfg,
        input: INPUT.into(),
        lengths: LENGTHS.into(),
        raw_channels: opts.input_transform.as_ref().map(|t| t.mean.len()),
    };
    if let Some(t) = &opts.input_transform {
        b.input_transform(t);
    }
    let graph = b.build(model, head)?;
    let mut metadata_props = vec![StringStringEntryProto {
        key: crate::weights::CONFIG_METADATA_KEY.into(),
        value: cfg.to_json(),
    }];
    if let Some(h) = head {
        metadata_props.push(StringStringEntryProto {
            key: crate::train::head::HEAD_METADATA_KEY.into(),
            value: h.cfg.to_json(),
        });
    }
    let proto = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "gqa".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: format!(
            "gqa model (Edifice.Attention.GQA, SPEC section 2): embedDim {}, hiddenSize {}, heads {}/{} (KV), headDim {}, layers {}, rotary {}, output {}{}",
            cfg.embed_dim,
            cfg.hidden_size,
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.head_dim(),
            cfg.num_layers,
            rotary_name(cfg),
            cfg.output_mode.as_str(),
            head.map(|h| format!(", head {}", h.cfg.to_json())).unwrap_or_default(),
        ),
        graph: Some(graph),
        metadata_props,
    };
    let bytes = proto.encode_to_vec();
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::option(
            "parameters",
            format!("an ONNX file of at most {MAX_FILE_BYTES} bytes"),
            format!("{} bytes", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// Refuses weights that cannot fit in one protobuf file (`weight_bytes` of F32 data).
///
/// # Errors
/// [`Error::InvalidOption`] naming `parameters` above `MAX_FILE_BYTES - 1 MiB`.
fn check_weight_bytes(weight_bytes: u64) -> Result<()> {
    if weight_bytes > MAX_FILE_BYTES - GRAPH_SLACK_BYTES {
        return Err(Error::option(
            "parameters",
            format!("at most {} bytes of F32 weights (one ONNX protobuf file is limited to 2 GiB; external data is not written)", MAX_FILE_BYTES - GRAPH_SLACK_BYTES),
            format!("{weight_bytes} bytes"),
        ));
    }
    Ok(())
}

impl TaskModel {
    /// The model and its head as ONNX bytes: [`export`].
    ///
    /// # Errors
    /// As [`export`].
    pub fn to_onnx(&self, opts: &OnnxOptions) -> Result<Vec<u8>> {
        export(&self.model, self.head.as_ref(), opts)
    }
}

impl GqaModel {
    /// The model (no head) as ONNX bytes: [`export`].
    ///
    /// # Errors
    /// As [`export`].
    pub fn to_onnx(&self, opts: &OnnxOptions) -> Result<Vec<u8>> {
        export(self, None, opts)
    }
}

fn rotary_name(cfg: &GqaConfig) -> String {
    match (&cfg.rope_scaling, cfg.yarn, cfg.rope) {
        (Some(s), _, _) => format!("{} (Hugging Face), theta {}", s.type_name(), cfg.rope_theta),
        (None, true, _) => format!(
            "yarn (Edifice, scale {}, original max position {}), theta {}",
            cfg.yarn_scale, cfg.yarn_original_max_position, cfg.rope_theta
        ),
        (None, false, true) => format!("rope, theta {}", cfg.rope_theta),
        _ => "none".into(),
    }
}

/// The f32 values of a parameter (row-major).
fn values(v: &Var) -> Result<Vec<f32>> {
    Ok(v.as_detached_tensor()
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// `[rows, cols]` row-major -> `[cols, rows]`.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

fn dim_param(name: &str) -> Dimension {
    Dimension {
        value: Some(dimension::Value::DimParam(name.into())),
    }
}

fn dim_value(v: usize) -> Dimension {
    Dimension {
        value: Some(dimension::Value::DimValue(v as i64)),
    }
}

fn value_info(name: &str, elem_type: i32, dims: Vec<Dimension>, doc: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto { dim: dims }),
            })),
        }),
        doc_string: doc.into(),
    }
}

/// Name of the shared f32 scalar `0.0` (added by [`Builder::common`]).
const ZERO_F32: &str = "const.zero_f32";

/// Shared values of the graph (names of computed tensors).
struct Common {
    /// `[batch, seq, 1]` bool: position `< lengths[b]`.
    valid3: String,
    /// `[batch, 1, seq, seq]` f32: 0 where [`crate::mask::Mask`] lets row `i` read key `j` (`j <= i`,
    /// `j < lengths[b]`), else -1e9.
    mask: String,
    /// Rotary tables `[seq, D]`: `[cos, cos]` and `[-sin, sin]` (with the attention factor).
    rotary: Option<(String, String)>,
}

/// Names of the constants every layer shares (see [`Builder::layer_constants`]).
struct LayerConstants {
    /// `[0, 0, NH, D]`: `[B, T, NH*D]` -> `[B, T, NH, D]`.
    shape_q: String,
    /// `[0, 0, NKV, D]`: `[B, T, NKV*D]` -> `[B, T, NKV, D]`.
    shape_kv: String,
    /// `[0, 0, NH*D]`: `[B, T, NH, D]` -> `[B, T, NH*D]`.
    shape_o: String,
    /// `[0, NH, D, -1]`: repeated transposed keys `[B, NH, D, T]`.
    shape_k_rep: String,
    /// `[0, NH, -1, D]`: repeated values `[B, NH, T, D]`.
    shape_v_rep: String,
    /// The attention scale `1/sqrt(D)` (f32 scalar).
    scale: String,
    /// `1/sqrt(2)` (f32 scalar), for GELU.
    inv_sqrt2: String,
    /// `1.0` (f32 scalar), for GELU.
    one: String,
    /// `0.5` (f32 scalar), for GELU.
    half: String,
}

struct Builder<'a> {
    g: Graph,
    cfg: &'a GqaConfig,
    /// The model's input tensor: [`INPUT`], or the transform's tokens.
    input: String,
    /// The model's valid positions per row: [`LENGTHS`], or the transform's token counts.
    lengths: String,
    /// With an input transform, the raw channels `C` of the graph input (else `embedDim`).
    raw_channels: Option<usize>,
}

impl Builder<'_> {
    /// `x W^T + b` with `W: [out, in]` stored transposed as the initializer `{prefix}.weight_t`.
    fn linear(
        &mut self,
        x: &str,
        prefix: &str,
        w: &Var,
        bias: &Var,
        out: Option<&str>,
    ) -> Result<String> {
        let (rows, cols) = w.dims2()?;
        let wt = self.g.f32(
            &format!("{prefix}.weight_t"),
            &[cols, rows],
            &transpose(&values(w)?, rows, cols),
        );
        let bias = self
            .g
            .f32(&format!("{prefix}.bias"), &[rows], &values(bias)?);
        let y = self.g.op(
            "MatMul",
            &[x, &wt],
            vec![],
            Some(&format!("{prefix}.matmul")),
        );
        Ok(self.g.op(
            "Add",
            &[&y, &bias],
            vec![],
            out.or(Some(&format!("{prefix}.out"))),
        ))
    }

    fn linear_param(&mut self, x: &str, model: &GqaModel, prefix: &str) -> Result<String> {
        let p = model.params();
        let (w, b) = (
            p.get(&format!("{prefix}.weight"))?.clone(),
            p.get(&format!("{prefix}.bias"))?.clone(),
        );
        self.linear(x, prefix, &w, &b, None)
    }

    fn layer_norm(&mut self, x: &str, model: &GqaModel, prefix: &str) -> Result<String> {
        let p = model.params();
        let h = self.cfg.hidden_size;
        let g = self.g.f32(
            &format!("{prefix}.weight"),
            &[h],
            &values(p.get(&format!("{prefix}.weight"))?)?,
        );
        let b = self.g.f32(
            &format!("{prefix}.bias"),
            &[h],
            &values(p.get(&format!("{prefix}.bias"))?)?,
        );
        Ok(self.g.op(
            "LayerNormalization",
            &[x, &g, &b],
            vec![int("axis", -1), float("epsilon", 1e-5)],
            Some(&format!("{prefix}.out")),
        ))
    }

    /// Shape values, masks and rotary tables shared by every layer.
    fn common(&mut self) -> Result<Common> {
        let g = &mut self.g;
        let shape = g.op("Shape", &[&self.input], vec![], Some("input_shape"));
        let idx1 = g.i64("const.index_1", &[], &[1]);
        let seq = g.op(
            "Gather",
            &[&shape, &idx1],
            vec![int("axis", 0)],
            Some("seq"),
        );
        let zero = g.i64("const.zero_i64", &[], &[0]);
        let one = g.i64("const.one_i64", &[], &[1]);
        let pos = g.op("Range", &[&zero, &seq, &one], vec![], Some("positions"));
        let ax0 = g.i64("const.axes_0", &[1], &[0]);
        let ax1 = g.i64("const.axes_1", &[1], &[1]);
        let ax2 = g.i64("const.axes_2", &[1], &[2]);
        let pos_row = g.op("Unsqueeze", &[&pos, &ax0], vec![], Some("positions_row")); // [1, T]: key j / position
        let pos_col = g.op("Unsqueeze", &[&pos, &ax1], vec![], Some("positions_col")); // [T, 1]: query i
        let len_col = g.op(
            "Unsqueeze",
            &[&self.lengths, &ax1],
            vec![],
            Some("lengths_col"),
        ); // [B, 1]
        let valid = g.op("Less", &[&pos_row, &len_col], vec![], Some("valid")); // [B, T]
        let valid3 = g.op("Unsqueeze", &[&valid, &ax2], vec![], Some("valid_3d")); // [B, T, 1]
        let causal = g.op("LessOrEqual", &[&pos_row, &pos_col], vec![], Some("causal")); // [T, T]: j <= i
                                                                                         // The rule of [`crate::mask::Mask`]: offset 0 (no cache in the graph), key lengths from `lengths`,
                                                                                         // the model's sliding window (SPEC section 7). Padded query rows read what this rule
                                                                                         // leaves (possibly nothing: a uniform row over -1e9); nothing valid reads them.
        let causal = match self.cfg.sliding_window {
            None => causal,
            Some(w) => {
                // Sliding window: i - j < W.
                let back = g.op("Sub", &[&pos_col, &pos_row], vec![], Some("key_distance"));
                let wt = g.i64("const.window", &[], &[i64::try_from(w).unwrap_or(i64::MAX)]);
                let near = g.op("Less", &[&back, &wt], vec![], Some("in_window"));
                g.op("And", &[&causal, &near], vec![], Some("causal_window"))
            }
        };
        let key_valid = g.op("Unsqueeze", &[&valid, &ax1], vec![], Some("key_valid")); // [B, 1, T]
        let allowed = g.op("And", &[&causal, &key_valid], vec![], Some("allowed")); // [B, T, T]
        let f0 = g.f32(ZERO_F32, &[], &[0.0]);
        let neg = g.f32("const.mask_fill", &[], &[-1e9]);
        let mask3 = g.op("Where", &[&allowed, &f0, &neg], vec![], Some("mask_3d"));
        let mask = g.op("Unsqueeze", &[&mask3, &ax1], vec![], Some("attention_mask")); // [B, 1, T, T]
        let rotary = match self.cfg.rope_plan() {
            None => None,
            Some(plan) => Some(self.rotary_tables(&plan, &seq, &pos)?),
        };
        Ok(Common {
            valid3,
            mask,
            rotary,
        })
    }

    /// `inv_freq [D/2]` (f32) and attention factor of the config's rotary, in the graph.
    fn inv_freq(&mut self, plan: &crate::rope::RopePlan, seq: &str) -> (String, f32) {
        let d = self.cfg.head_dim();
        match self.cfg.rope_scaling {
            Some(RopeScaling::Dynamic {
                factor,
                original_max_position_embeddings,
            }) => {
                // transformers' dynamic NTK (crate::rope::hf_inv_freq), step for step:
                // L' = max(seq, orig) (f64); base' = theta * (factor*L'/orig - (factor-1))^(d/(d-2)) (f64);
                // inv[i] = 1f32 / f32(f64(f32(base'))^f64(f32(2i)/f32(d))).
                let g = &mut self.g;
                let seq_d = g.op(
                    "Cast",
                    &[seq],
                    vec![int("to", proto::DOUBLE as i64)],
                    Some("rope.seq_f64"),
                );
                let orig = g.f64(
                    "rope.orig_max_position",
                    &[],
                    &[original_max_position_embeddings as f64],
                );
                let l = g.op("Max", &[&seq_d, &orig], vec![], Some("rope.length"));
                let fac = g.f64("rope.factor", &[], &[factor]);
                let fm1 = g.f64("rope.factor_minus_1", &[], &[factor - 1.0]);
                let scaled = g.op1("Mul", &[&fac, &l]);
                let ratio = g.op1("Div", &[&scaled, &orig]);
                let r = g.op1("Sub", &[&ratio, &fm1]);
                let expo = g.f64("rope.base_exponent", &[], &[d as f64 / (d as f64 - 2.0)]);
                let pw = g.op1("Pow", &[&r, &expo]);
                let theta = g.f64("rope.theta", &[], &[self.cfg.rope_theta]);
                let base = g.op("Mul", &[&theta, &pw], vec![], Some("rope.dynamic_base"));
                let base32 = g.op("Cast", &[&base], vec![int("to", proto::FLOAT as i64)], None);
                let base_d = g.op(
                    "Cast",
                    &[&base32],
                    vec![int("to", proto::DOUBLE as i64)],
                    None,
                );
                let exps: Vec<f64> = (0..d / 2)
                    .map(|i| f64::from((2 * i) as f32 / d as f32))
                    .collect();
                let e = g.f64("rope.freq_exponents", &[d / 2], &exps);
                let p = g.op1("Pow", &[&base_d, &e]);
                let p32 = g.op("Cast", &[&p], vec![int("to", proto::FLOAT as i64)], None);
                let one = g.f32("rope.one_f32", &[], &[1.0]);
                (
                    g.op("Div", &[&one, &p32], vec![], Some("rope.inv_freq")),
                    1.0,
                )
            }
            _ => {
                let (inv, af) = plan.inv_freq(0);
                (self.g.f32("rope.inv_freq", &[d / 2], &inv), af)
            }
        }
    }

    /// Rotary tables `[T, D]`: `[cos, cos]` and `[-sin, sin]`.
    fn rotary_tables(
        &mut self,
        plan: &crate::rope::RopePlan,
        seq: &str,
        pos: &str,
    ) -> Result<(String, String)> {
        let (inv, af) = self.inv_freq(plan, seq);
        let g = &mut self.g;
        let to = |t: i32| vec![int("to", t as i64)];
        let posd = g.op(
            "Cast",
            &[pos],
            to(proto::DOUBLE),
            Some("rope.positions_f64"),
        );
        let inv_d = g.op(
            "Cast",
            &[&inv],
            to(proto::DOUBLE),
            Some("rope.inv_freq_f64"),
        );
        let ax1 = "const.axes_1";
        let pcol = g.op1("Unsqueeze", &[&posd, ax1]); // [T, 1]
                                                      // [T, D/2]: the angle formed in f64 from the exact position, as the core's tables.
        let angle_d = g.op("Mul", &[&pcol, &inv_d], vec![], Some("rope.angle_f64"));
        let cos_d = g.op1("Cos", &[&angle_d]);
        let sin_d = g.op1("Sin", &[&angle_d]);
        let mut cos = g.op("Cast", &[&cos_d], to(proto::FLOAT), Some("rope.cos_half"));
        let mut sin = g.op("Cast", &[&sin_d], to(proto::FLOAT), Some("rope.sin_half"));
        if af != 1.0 {
            let a = g.f32("rope.attention_factor", &[], &[af]);
            cos = g.op1("Mul", &[&cos, &a]);
            sin = g.op1("Mul", &[&sin, &a]);
        }
        let neg_sin = g.op1("Neg", &[&sin]);
        let cos_full = g.op(
            "Concat",
            &[&cos, &cos],
            vec![int("axis", -1)],
            Some("rope.cos"),
        ); // [T, D]
        let sin_full = g.op(
            "Concat",
            &[&neg_sin, &sin],
            vec![int("axis", -1)],
            Some("rope.sin_signed"),
        ); // [T, D]
        Ok((cos_full, sin_full))
    }

    /// Rotates `x: [B, N, T, D]`: `x * [cos, cos] + [x2, x1] * [-sin, sin]`.
    fn rope(&mut self, x: &str, tables: &(String, String), prefix: &str) -> String {
        let g = &mut self.g;
        let half = self.cfg.head_dim() / 2;
        let split = g.i64("const.rope_split", &[2], &[half as i64, half as i64]);
        let (x1, x2) = (format!("{prefix}.x1"), format!("{prefix}.x2"));
        g.op_multi("Split", "", &[x, &split], vec![int("axis", 3)], &[&x1, &x2]);
        let swapped = g.op(
            "Concat",
            &[&x2, &x1],
            vec![int("axis", 3)],
            Some(&format!("{prefix}.swapped")),
        );
        let a = g.op1("Mul", &[x, &tables.0]);
        let b = g.op1("Mul", &[&swapped, &tables.1]);
        g.op("Add", &[&a, &b], vec![], Some(&format!("{prefix}.rotated")))
    }

    /// GQA: `[B, NKV, a, b]` -> `[B, NH, a, b]` with query head `i` reading KV head `floor(i / group)`.
    fn repeat_kv(&mut self, t: &str, shape: &str) -> String {
        let group = self.cfg.num_heads / self.cfg.num_kv_heads;
        if group == 1 {
            return t.to_string();
        }
        let g = &mut self.g;
        let tile = g.i64("const.tile_group", &[5], &[1, 1, group as i64, 1, 1]);
        let u = g.op1("Unsqueeze", &[t, "const.axes_2"]); // [B, NKV, 1, a, b]
        let tiled = g.op1("Tile", &[&u, &tile]); // [B, NKV, G, a, b]
        g.op1("Reshape", &[&tiled, shape])
    }

    /// Builds the whole graph (SPEC section 2): the masked input, the optional input projection,
    /// every block, the final LayerNorm, the output mode and the optional head.
    ///
    /// # Errors
    /// [`Error::Backend`] reading a weight; a missing parameter's error from the store.
    fn build(&mut self, model: &GqaModel, head: Option<&Head>) -> Result<GraphProto> {
        let c = self.common()?;
        let k = self.layer_constants();
        // Padded positions hold anything (NaN included): zero them, as the core does.
        let mut h = self.g.op(
            "Where",
            &[&c.valid3, &self.input, ZERO_F32],
            vec![],
            Some("input_masked"),
        );
        if self.cfg.has_input_projection() {
            h = self.linear_param(&h, model, "input_projection")?;
        }
        for l in 0..self.cfg.num_layers {
            let p = format!("blocks.{l}");
            h = self.attention_block(&h, model, &p, &c, &k)?;
            h = self.ffn_block(&h, model, &p, &k)?;
        }
        let hn = self.layer_norm(&h, model, "final_norm")?;
        let out_dims = self.output(&hn, &c);
        let mut outputs = vec![value_info(
            OUTPUT,
            proto::FLOAT,
            out_dims,
            "the model output (SPEC section 2, the model's outputMode)",
        )];
        if let Some(head) = head {
            outputs.push(self.head(head)?);
        }
        Ok(self.graph_proto(outputs))
    }

    /// The constants every layer shares, added to the graph in this order: the head reshape
    /// shapes, the attention scale `1/sqrt(D)` and the exact-GELU constants.
    fn layer_constants(&mut self) -> LayerConstants {
        let cfg = self.cfg;
        let (nh, nkv, d) = (
            cfg.num_heads as i64,
            cfg.num_kv_heads as i64,
            cfg.head_dim() as i64,
        );
        let g = &mut self.g;
        let shape_q = g.i64("const.shape_q", &[4], &[0, 0, nh, d]);
        let shape_kv = g.i64("const.shape_kv", &[4], &[0, 0, nkv, d]);
        let shape_o = g.i64("const.shape_o", &[3], &[0, 0, nh * d]);
        let shape_k_rep = g.i64("const.shape_k_rep", &[4], &[0, nh, d, -1]); // [B, NH, D, T]
        let shape_v_rep = g.i64("const.shape_v_rep", &[4], &[0, nh, -1, d]); // [B, NH, T, D]
        let scale = g.f32(
            "const.attention_scale",
            &[],
            &[(1.0 / (d as f64).sqrt()) as f32],
        );
        let inv_sqrt2 = g.f32("const.inv_sqrt2", &[], &[std::f32::consts::FRAC_1_SQRT_2]);
        let one = g.f32("const.one_f32", &[], &[1.0]);
        let half = g.f32("const.half_f32", &[], &[0.5]);
        LayerConstants {
            shape_q,
            shape_kv,
            shape_o,
            shape_k_rep,
            shape_v_rep,
            scale,
            inv_sqrt2,
            one,
            half,
        }
    }

    /// The heads of block `p` from its normed input `a: [B, T, H]`: `q: [B, NH, T, D]`,
    /// `k_t: [B, NKV, D, T]` (keys transposed for the score product) and `v: [B, NKV, T, D]`,
    /// with the rotary applied to `q` and `k` when the config has one.
    ///
    /// # Errors
    /// [`Error::Backend`] reading a projection's weights.
    fn attention_heads(
        &mut self,
        a: &str,
        model: &GqaModel,
        p: &str,
        c: &Common,
        k: &LayerConstants,
    ) -> Result<(String, String, String)> {
        let q = self.linear_param(a, model, &format!("{p}.attn.q_proj"))?;
        let kp = self.linear_param(a, model, &format!("{p}.attn.k_proj"))?;
        let v = self.linear_param(a, model, &format!("{p}.attn.v_proj"))?;
        let g = &mut self.g;
        let q4 = g.op1("Reshape", &[&q, &k.shape_q]);
        let mut q = g.op(
            "Transpose",
            &[&q4],
            vec![ints("perm", &[0, 2, 1, 3])],
            Some(&format!("{p}.attn.q")),
        ); // [B,NH,T,D]
        let k4 = g.op1("Reshape", &[&kp, &k.shape_kv]);
        let v4 = g.op1("Reshape", &[&v, &k.shape_kv]);
        let v = g.op(
            "Transpose",
            &[&v4],
            vec![ints("perm", &[0, 2, 1, 3])],
            Some(&format!("{p}.attn.v")),
        ); // [B,NKV,T,D]
        let k_t = match &c.rotary {
            None => g.op(
                "Transpose",
                &[&k4],
                vec![ints("perm", &[0, 2, 3, 1])],
                Some(&format!("{p}.attn.k_t")),
            ), // [B,NKV,D,T]
            Some(tables) => {
                let k = g.op(
                    "Transpose",
                    &[&k4],
                    vec![ints("perm", &[0, 2, 1, 3])],
                    Some(&format!("{p}.attn.k")),
                ); // [B,NKV,T,D]
                q = self.rope(&q, tables, &format!("{p}.attn.q_rope"));
                let k = self.rope(&k, tables, &format!("{p}.attn.k_rope"));
                self.g.op(
                    "Transpose",
                    &[&k],
                    vec![ints("perm", &[0, 1, 3, 2])],
                    Some(&format!("{p}.attn.k_t")),
                )
            }
        };
        Ok((q, k_t, v))
    }

    /// The attention half of block `p` on `h: [B, T, H]`: LayerNorm, scaled dot-product
    /// attention over the masked scores (query head `i` reading KV head `floor(i / group)`),
    /// `out_proj`, and the residual. Returns the new `h: [B, T, H]`.
    ///
    /// # Errors
    /// [`Error::Backend`] reading a weight.
    fn attention_block(
        &mut self,
        h: &str,
        model: &GqaModel,
        p: &str,
        c: &Common,
        k: &LayerConstants,
    ) -> Result<String> {
        let a = self.layer_norm(h, model, &format!("{p}.attn_norm"))?;
        let (q, k_t, v) = self.attention_heads(&a, model, p, c, k)?;
        let k_rep = self.repeat_kv(&k_t, &k.shape_k_rep);
        let v_rep = self.repeat_kv(&v, &k.shape_v_rep);
        let g = &mut self.g;
        let qs = g.op1("Mul", &[&q, &k.scale]);
        let s = g.op1("MatMul", &[&qs, &k_rep]);
        let s = g.op(
            "Add",
            &[&s, &c.mask],
            vec![],
            Some(&format!("{p}.attn.scores")),
        ); // [B,NH,T,T]
        let probs = g.op(
            "Softmax",
            &[&s],
            vec![int("axis", -1)],
            Some(&format!("{p}.attn.probs")),
        );
        let o = g.op1("MatMul", &[&probs, &v_rep]); // [B,NH,T,D]
        let o = g.op("Transpose", &[&o], vec![ints("perm", &[0, 2, 1, 3])], None);
        let o = g.op1("Reshape", &[&o, &k.shape_o]); // [B,T,NH*D]
        let attn = self.linear_param(&o, model, &format!("{p}.attn.out_proj"))?;
        Ok(self.g.op(
            "Add",
            &[h, &attn],
            vec![],
            Some(&format!("{p}.attn_residual")),
        ))
    }

    /// The feed-forward half of block `p` on `h: [B, T, H]`: LayerNorm, `ffn_up`, exact GELU
    /// `0.5 * u * (1 + erf(u / sqrt(2)))`, `ffn_down`, and the residual. Returns the new `h`.
    ///
    /// # Errors
    /// [`Error::Backend`] reading a weight.
    fn ffn_block(
        &mut self,
        h: &str,
        model: &GqaModel,
        p: &str,
        k: &LayerConstants,
    ) -> Result<String> {
        let f = self.layer_norm(h, model, &format!("{p}.ffn_norm"))?;
        let u = self.linear_param(&f, model, &format!("{p}.ffn_up"))?;
        let g = &mut self.g;
        // exact GELU: 0.5 * u * (1 + erf(u / sqrt(2)))
        let e = g.op1("Mul", &[&u, &k.inv_sqrt2]);
        let e = g.op1("Erf", &[&e]);
        let e = g.op1("Add", &[&e, &k.one]);
        let e = g.op1("Mul", &[&u, &e]);
        let gelu = g.op(
            "Mul",
            &[&e, &k.half],
            vec![],
            Some(&format!("{p}.ffn_gelu")),
        );
        let down = self.linear_param(&gelu, model, &format!("{p}.ffn_down"))?;
        Ok(self.g.op(
            "Add",
            &[h, &down],
            vec![],
            Some(&format!("{p}.ffn_residual")),
        ))
    }

    /// The graph output [`OUTPUT`] of the final hidden states `hn: [B, T, H]` for the config's
    /// output mode (`last_timestep` and `mean_pool`: `[B, H]`; `all`: `[B, T, H]`, zeros at
    /// padded positions). Returns its dimensions.
    fn output(&mut self, hn: &str, c: &Common) -> Vec<Dimension> {
        let hd = self.cfg.hidden_size;
        let g = &mut self.g;
        match self.cfg.output_mode {
            OutputMode::LastTimestep => {
                // h[b, lengths[b] - 1, :] by GatherElements along the time axis.
                let last = g.op(
                    "Sub",
                    &[&self.lengths, "const.one_i64"],
                    vec![],
                    Some("last_position"),
                );
                let s3 = g.i64("const.shape_b11", &[3], &[-1, 1, 1]);
                let idx = g.op1("Reshape", &[&last, &s3]);
                let e = g.i64("const.expand_1_1_h", &[3], &[1, 1, hd as i64]);
                let idx = g.op("Expand", &[&idx, &e], vec![], Some("last_index")); // [B, 1, H]
                let picked = g.op(
                    "GatherElements",
                    &[hn, &idx],
                    vec![int("axis", 1)],
                    Some("last_hidden"),
                ); // [B, 1, H]
                g.op("Squeeze", &[&picked, "const.axes_1"], vec![], Some(OUTPUT));
                vec![dim_param("batch"), dim_value(hd)]
            }
            OutputMode::MeanPool => {
                let w = g.op(
                    "Cast",
                    &[&c.valid3],
                    vec![int("to", proto::FLOAT as i64)],
                    Some("valid_f32"),
                ); // [B, T, 1]
                let masked = g.op1("Mul", &[hn, &w]);
                let sum = g.op(
                    "ReduceSum",
                    &[&masked, "const.axes_1"],
                    vec![int("keepdims", 0)],
                    Some("position_sum"),
                ); // [B, H]
                let lf = g.op(
                    "Cast",
                    &["lengths_col"],
                    vec![int("to", proto::FLOAT as i64)],
                    Some("lengths_f32"),
                ); // [B, 1]
                g.op("Div", &[&sum, &lf], vec![], Some(OUTPUT));
                vec![dim_param("batch"), dim_value(hd)]
            }
            OutputMode::All => {
                g.op("Where", &[&c.valid3, hn, ZERO_F32], vec![], Some(OUTPUT));
                vec![dim_param("batch"), dim_param("seq"), dim_value(hd)]
            }
        }
    }

    /// The head on [`OUTPUT`] `[B, H]`: classification -> [`PROBABILITIES`] `[B, K]` (softmax
    /// of the logits), regression -> [`VALUES`] `[B, K]`. Returns the graph output's info.
    ///
    /// # Errors
    /// [`Error::Backend`] reading the head's weights.
    fn head(&mut self, head: &Head) -> Result<ValueInfoProto> {
        let k = head.cfg.out_dim();
        let (w, bias) = (head.weight.clone(), head.bias.clone());
        Ok(match head.cfg {
            HeadConfig::Classification { .. } => {
                let logits = self.linear(OUTPUT, "head", &w, &bias, Some("logits"))?;
                self.g.op(
                    "Softmax",
                    &[&logits],
                    vec![int("axis", -1)],
                    Some(PROBABILITIES),
                );
                value_info(
                    PROBABILITIES,
                    proto::FLOAT,
                    vec![dim_param("batch"), dim_value(k)],
                    "class probabilities: softmax(output head.weight^T + head.bias)",
                )
            }
            HeadConfig::Regression { .. } => {
                self.linear(OUTPUT, "head", &w, &bias, Some(VALUES))?;
                value_info(
                    VALUES,
                    proto::FLOAT,
                    vec![dim_param("batch"), dim_value(k)],
                    "regression outputs: output head.weight^T + head.bias",
                )
            }
        })
    }

    /// Moves the built nodes and initializers into the graph, with the two inputs ([`INPUT`]
    /// `[batch, seq, embedDim]` f32, [`LENGTHS`] `[batch]` i64) and `outputs`.
    fn graph_proto(&mut self, outputs: Vec<ValueInfoProto>) -> GraphProto {
        let g = std::mem::take(&mut self.g);
        GraphProto {
            node: g.nodes,
            name: "gqa".into(),
            initializer: g.initializers,
            doc_string:
                "gqa model (SPEC section 2); inputs left-aligned with lengths[b] valid positions"
                    .into(),
            input: vec![
                value_info(
                    INPUT,
                    proto::FLOAT,
                    vec![
                        dim_param("batch"),
                        dim_param("seq"),
                        dim_value(self.raw_channels.unwrap_or(self.cfg.embed_dim)),
                    ],
                    if self.raw_channels.is_some() {
                        "float32 [batch, seq, channels], raw left-aligned series (the input transform is in the graph)"
                    } else {
                        "float32 [batch, seq, embedDim], left-aligned sequences"
                    },
                ),
                value_info(
                    LENGTHS,
                    proto::INT64,
                    vec![dim_param("batch")],
                    "int64 [batch]: valid positions per row, 1..=seq",
                ),
            ],
            output: outputs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_over_the_protobuf_limit_are_refused_naming_parameters() {
        assert!(check_weight_bytes(MAX_FILE_BYTES - GRAPH_SLACK_BYTES).is_ok());
        let e = check_weight_bytes(MAX_FILE_BYTES - GRAPH_SLACK_BYTES + 1).unwrap_err();
        assert_eq!(e.code(), "INVALID_OPTION");
        assert!(e.to_string().contains("parameters"), "{e}");
    }

    #[test]
    fn options_refuse_unknown_fields() {
        assert_eq!(OnnxOptions::from_json("").unwrap(), OnnxOptions::default());
        assert_eq!(
            OnnxOptions::from_json("{}").unwrap(),
            OnnxOptions::default()
        );
        let e = OnnxOptions::from_json(r#"{"opset": 18}"#).unwrap_err();
        assert_eq!(e.code(), "INVALID_OPTION");
        assert!(e.to_string().contains("opset"), "{e}");
    }

    #[test]
    fn input_transform_parses_with_defaults_and_is_checked_against_embed_dim() {
        let o = OnnxOptions::from_json(r#"{"inputTransform": {"mean": [1, 2], "std": [0.5, 4]}}"#)
            .unwrap();
        let t = o.input_transform.unwrap();
        assert_eq!((t.instance_norm, t.patch), (false, 1));
        assert!(t.validate(2).is_ok());
        let e = t.validate(4).unwrap_err();
        assert_eq!(e.code(), "INVALID_OPTION");
        assert!(e.to_string().contains("onnxOptions.inputTransform"), "{e}");
        assert!(e.to_string().contains("2 channels * patch 1"), "{e}");
        let p = InputTransform {
            patch: 2,
            ..t.clone()
        };
        assert!(p.validate(4).is_ok());
        let z = InputTransform {
            std: vec![0.0, 1.0],
            ..t
        };
        assert!(z
            .validate(2)
            .unwrap_err()
            .to_string()
            .contains("std values finite and > 0"));
    }

    #[test]
    fn export_encodes_a_model_proto_with_opset_17_and_the_named_inputs() {
        let cfg = GqaConfig::from_json(r#"{"embedDim": 3, "hiddenSize": 8, "numHeads": 2, "numKvHeads": 1, "numLayers": 1, "rope": true}"#).unwrap();
        let model = GqaModel::new(cfg).unwrap();
        let bytes = model.to_onnx(&OnnxOptions::default()).unwrap();
        let m = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(m.opset_import[0].version, OPSET);
        let g = m.graph.unwrap();
        let names: Vec<_> = g.input.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, [INPUT, LENGTHS]);
        assert_eq!(g.output[0].name, OUTPUT);
        assert!(g.node.iter().any(|n| n.op_type == "LayerNormalization"));
    }
}
