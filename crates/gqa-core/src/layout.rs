//! The parameter table (SPEC section 3), the one home of every parameter's canonical name,
//! shape, initialiser, random stream, Edifice/Axon name and Hugging Face name.
//!
//! The model ([`crate::GqaModel::new`]), its blocks, the standalone attention layer
//! ([`crate::GqaAttention::new`]), the fused engine's parameter offsets, the exact parameter
//! count ([`crate::GqaConfig::param_count_exact`]), safetensors loading under canonical, Axon and
//! Hugging Face names ([`crate::weights`]) and the CLI's `gqa info` table (through the bindings'
//! `parameterLayout`) all read it.
//!
//! Order (canonical, SPEC section 3): `input_projection` (when `embedDim != hiddenSize`), then
//! per block `attn_norm`, `attn.q_proj`, `attn.k_proj`, `attn.v_proj`, `attn.out_proj`,
//! `ffn_norm`, `ffn_up`, `ffn_down`, then `final_norm`; each module has a `weight` and a `bias`.
//! A parameter's random stream is its index in that order ([`crate::init`]), so adding a
//! parameter anywhere but the end would change every initial value after it.

use serde::Serialize;

use crate::attention::AttentionConfig;
use crate::config::GqaConfig;

/// What a module is: a dense layer `y = x W^T + b` (`W: [out, in]`, PyTorch layout) or a
/// LayerNorm (`gamma, beta: [H]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// Dense layer: `weight [out, in]` (Glorot-uniform), `bias [out]` (zeros).
    Dense,
    /// LayerNorm: `weight` = gamma `[H]` (ones), `bias` = beta `[H]` (zeros).
    LayerNorm,
}

/// The modules of one pre-norm block, in canonical order. Module `m` owns the block's
/// parameters `2 * m` (weight) and `2 * m + 1` (bias).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockModule {
    /// LayerNorm before attention, `[H]`.
    AttnNorm,
    /// Query projection `[NH*D, H]`.
    QProj,
    /// Key projection `[NKV*D, H]`.
    KProj,
    /// Value projection `[NKV*D, H]`.
    VProj,
    /// Output projection `[H, NH*D]`.
    OutProj,
    /// LayerNorm before the feed-forward, `[H]`.
    FfnNorm,
    /// Feed-forward up projection `[4H, H]`.
    FfnUp,
    /// Feed-forward down projection `[H, 4H]`.
    FfnDown,
}

/// Parameters per block (8 modules x weight and bias).
pub const PARAMS_PER_BLOCK: usize = 2 * BlockModule::ALL.len();

/// The attention layer's modules, in canonical order (the standalone layer's whole table, and
/// parameters 2..10 of a block).
pub const ATTENTION_MODULES: [BlockModule; 4] = [
    BlockModule::QProj,
    BlockModule::KProj,
    BlockModule::VProj,
    BlockModule::OutProj,
];

impl BlockModule {
    /// Every module of a block, in canonical order.
    pub const ALL: [BlockModule; 8] = [
        BlockModule::AttnNorm,
        BlockModule::QProj,
        BlockModule::KProj,
        BlockModule::VProj,
        BlockModule::OutProj,
        BlockModule::FfnNorm,
        BlockModule::FfnUp,
        BlockModule::FfnDown,
    ];

    /// The module's name within a block (`attn.q_proj`, `ffn_up`...); parameters are
    /// `blocks.{l}.{name}.weight` and `.bias`.
    pub const fn name(self) -> &'static str {
        match self {
            BlockModule::AttnNorm => "attn_norm",
            BlockModule::QProj => "attn.q_proj",
            BlockModule::KProj => "attn.k_proj",
            BlockModule::VProj => "attn.v_proj",
            BlockModule::OutProj => "attn.out_proj",
            BlockModule::FfnNorm => "ffn_norm",
            BlockModule::FfnUp => "ffn_up",
            BlockModule::FfnDown => "ffn_down",
        }
    }

    /// The module's name within the attention layer (`q_proj`...), for the attention modules.
    pub fn attention_name(self) -> Option<&'static str> {
        self.name().strip_prefix("attn.")
    }

    /// The module's name in a Hugging Face Llama/Mistral/Qwen2 decoder layer's `self_attn`
    /// (`q_proj`, `k_proj`, `v_proj`, `o_proj`), for the attention modules.
    pub fn hf_name(self) -> Option<&'static str> {
        match self {
            BlockModule::OutProj => Some("o_proj"),
            m => m.attention_name(),
        }
    }

    /// Dense layer or LayerNorm.
    pub const fn kind(self) -> ModuleKind {
        match self {
            BlockModule::AttnNorm | BlockModule::FfnNorm => ModuleKind::LayerNorm,
            _ => ModuleKind::Dense,
        }
    }

    /// Index of the module's weight among the block's parameters (its bias is the next one).
    pub const fn first_param(self) -> usize {
        2 * self as usize
    }

    /// The weight's shape: `[out, in]` for a dense layer, `[H]` for a LayerNorm. Sizes saturate
    /// (an options set that large fails validation before anything is built).
    pub fn weight_shape(self, d: &Dims) -> Vec<usize> {
        let ffn = d.hidden.saturating_mul(4);
        match self {
            BlockModule::AttnNorm | BlockModule::FfnNorm => vec![d.hidden],
            BlockModule::QProj => vec![d.q_dim, d.hidden],
            BlockModule::KProj | BlockModule::VProj => vec![d.kv_dim, d.hidden],
            BlockModule::OutProj => vec![d.hidden, d.q_dim],
            BlockModule::FfnUp => vec![ffn, d.hidden],
            BlockModule::FfnDown => vec![d.hidden, ffn],
        }
    }
}

/// The sizes the shapes are made of: `H`, `NH*D`, `NKV*D` (saturating products).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// `hiddenSize` `H`.
    pub hidden: usize,
    /// `numHeads * headDim`.
    pub q_dim: usize,
    /// `numKvHeads * headDim`.
    pub kv_dim: usize,
}

impl Dims {
    /// The sizes of attention options.
    pub fn of(cfg: &AttentionConfig) -> Self {
        let d = cfg.head_dim();
        Dims {
            hidden: cfg.hidden_size,
            q_dim: cfg.num_heads.saturating_mul(d),
            kv_dim: cfg.num_kv_heads.saturating_mul(d),
        }
    }
}

/// How a parameter is initialised (SPEC section 3; Axon's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// `U(-b, b)`, `b = sqrt(6 / (in + out))` (Glorot & Bengio, 2010), from the parameter's
    /// stream ([`crate::init::glorot_uniform`]).
    GlorotUniform,
    /// All 0 (biases, LayerNorm beta).
    Zeros,
    /// All 1 (LayerNorm gamma).
    Ones,
}

/// One parameter tensor of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParamSpec {
    /// Canonical name (SPEC section 3), e.g. `blocks.0.attn.q_proj.weight`.
    pub name: String,
    /// Shape, PyTorch layout (`[out, in]` for dense weights).
    pub shape: Vec<usize>,
    /// Initialiser.
    pub init: Init,
    /// The ChaCha8 stream of its initial values: the index in canonical order.
    pub stream: u64,
    /// Whether it is the weight of a matrix product (counted in FLOPs); false for biases and
    /// LayerNorm parameters.
    pub matmul: bool,
    /// Its name in an Edifice/Axon checkpoint (`gqa_block_1_attn_q_proj.kernel`,
    /// `final_norm.gamma`...); dense kernels there are stored `[in, out]`.
    pub axon_name: String,
}

impl ParamSpec {
    /// Number of elements (u128: the product of the shape cannot overflow).
    pub fn count(&self) -> u128 {
        self.shape
            .iter()
            .fold(1u128, |a, &d| a.saturating_mul(d as u128))
    }
}

/// The two parameters of a module: `{name}.weight` and `{name}.bias`, with Axon names
/// `{axon}.kernel`/`.bias` (dense) or `{axon}.gamma`/`.beta` (LayerNorm).
fn module(
    rows: &mut Vec<ParamSpec>,
    name: &str,
    axon: &str,
    kind: ModuleKind,
    weight_shape: Vec<usize>,
) {
    let out = weight_shape[0];
    let (w_init, w_axon, b_axon) = match kind {
        ModuleKind::Dense => (Init::GlorotUniform, "kernel", "bias"),
        ModuleKind::LayerNorm => (Init::Ones, "gamma", "beta"),
    };
    let dense = kind == ModuleKind::Dense;
    let next = rows.len() as u64;
    rows.push(ParamSpec {
        name: format!("{name}.weight"),
        shape: weight_shape,
        init: w_init,
        stream: next,
        matmul: dense,
        axon_name: format!("{axon}.{w_axon}"),
    });
    rows.push(ParamSpec {
        name: format!("{name}.bias"),
        shape: vec![out],
        init: Init::Zeros,
        stream: next + 1,
        matmul: false,
        axon_name: format!("{axon}.{b_axon}"),
    });
}

/// The model's table, in canonical order (streams `0..len`).
///
/// Shapes: `input_projection.weight [H, E]` (only when `E != H`), per block the shapes of
/// [`BlockModule::weight_shape`], `final_norm.* [H]`.
pub fn model_layout(cfg: &GqaConfig) -> Vec<ParamSpec> {
    let d = Dims::of(&AttentionConfig::from_model(cfg));
    let mut rows = Vec::with_capacity(4 + cfg.num_layers.saturating_mul(PARAMS_PER_BLOCK));
    if cfg.has_input_projection() {
        module(
            &mut rows,
            "input_projection",
            "input_projection",
            ModuleKind::Dense,
            vec![cfg.hidden_size, cfg.embed_dim],
        );
    }
    for l in 0..cfg.num_layers {
        for m in BlockModule::ALL {
            let axon = format!("gqa_block_{}_{}", l + 1, m.name().replace('.', "_"));
            module(
                &mut rows,
                &format!("blocks.{l}.{}", m.name()),
                &axon,
                m.kind(),
                m.weight_shape(&d),
            );
        }
    }
    module(
        &mut rows,
        "final_norm",
        "final_norm",
        ModuleKind::LayerNorm,
        vec![cfg.hidden_size],
    );
    rows
}

/// The standalone attention layer's table (`q_proj.weight` ... `out_proj.bias`, streams 0..8;
/// Axon names `q_proj.kernel`...).
pub fn attention_layout(cfg: &AttentionConfig) -> Vec<ParamSpec> {
    let d = Dims::of(cfg);
    let mut rows = Vec::with_capacity(2 * ATTENTION_MODULES.len());
    for m in ATTENTION_MODULES {
        let name = m.attention_name().expect("attention module");
        module(&mut rows, name, name, m.kind(), m.weight_shape(&d));
    }
    rows
}

/// Every parameter's element count summed, without building the whole table (so it stays cheap
/// and exact for any options, valid or not): the ends' rows plus `numLayers` times one block's rows
/// (the same rows as [`model_layout`], counted with [`ParamSpec::count`]).
pub fn param_count_u128(cfg: &GqaConfig) -> u128 {
    let d = Dims::of(&AttentionConfig::from_model(cfg));
    let sum = |rows: &[ParamSpec]| {
        rows.iter()
            .map(ParamSpec::count)
            .fold(0u128, u128::saturating_add)
    };
    let mut block = Vec::with_capacity(PARAMS_PER_BLOCK);
    for m in BlockModule::ALL {
        module(&mut block, m.name(), m.name(), m.kind(), m.weight_shape(&d));
    }
    let mut ends = Vec::with_capacity(4);
    if cfg.has_input_projection() {
        module(
            &mut ends,
            "input_projection",
            "input_projection",
            ModuleKind::Dense,
            vec![cfg.hidden_size, cfg.embed_dim],
        );
    }
    module(
        &mut ends,
        "final_norm",
        "final_norm",
        ModuleKind::LayerNorm,
        vec![cfg.hidden_size],
    );
    sum(&ends).saturating_add((cfg.num_layers as u128).saturating_mul(sum(&block)))
}

/// Number of parameter tensors of the model (`numLayers * 16`, the ends' 2 or 4), saturating.
pub fn tensor_count_u128(cfg: &GqaConfig) -> u128 {
    let ends = if cfg.has_input_projection() { 4 } else { 2 };
    (cfg.num_layers as u128)
        .saturating_mul(PARAMS_PER_BLOCK as u128)
        .saturating_add(ends)
}

/// What a built model needs, bounded by the memory limit at validation: 4 bytes per
/// parameter plus [`crate::memory::PER_TENSOR_BYTES`] per parameter tensor (its table row, candle
/// `Var` and references), so a huge `numLayers` of tiny blocks is refused before the table is
/// built.
pub fn resident_bytes_u128(cfg: &GqaConfig) -> u128 {
    param_count_u128(cfg).saturating_mul(4).saturating_add(
        tensor_count_u128(cfg).saturating_mul(u128::from(crate::memory::PER_TENSOR_BYTES)),
    )
}

/// The Edifice/Axon name of a canonical model or attention-layer parameter name, from the table:
/// `blocks.{l}.attn.q_proj.weight` -> `gqa_block_{l+1}_attn_q_proj.kernel`,
/// `blocks.{l}.attn_norm.weight` -> `gqa_block_{l+1}_attn_norm.gamma`, `final_norm.bias` ->
/// `final_norm.beta`, `input_projection.weight` -> `input_projection.kernel`, `q_proj.weight` ->
/// `q_proj.kernel`. `None` for a name the table does not have.
pub fn axon_name(canonical: &str) -> Option<String> {
    let (module_name, param) = canonical.rsplit_once('.')?;
    let (kind, axon) = if let Some(rest) = module_name.strip_prefix("blocks.") {
        let (l, m) = rest.split_once('.')?;
        let l: usize = l.parse().ok()?;
        let m = BlockModule::ALL.into_iter().find(|b| b.name() == m)?;
        (
            m.kind(),
            format!(
                "gqa_block_{}_{}",
                l.checked_add(1)?,
                m.name().replace('.', "_")
            ),
        )
    } else {
        let kind = match module_name {
            "input_projection" => ModuleKind::Dense,
            "final_norm" => ModuleKind::LayerNorm,
            m => ATTENTION_MODULES
                .into_iter()
                .find(|b| b.attention_name() == Some(m))?
                .kind(),
        };
        (kind, module_name.to_string())
    };
    let suffix = match (kind, param) {
        (ModuleKind::Dense, "weight") => "kernel",
        (ModuleKind::Dense, "bias") => "bias",
        (ModuleKind::LayerNorm, "weight") => "gamma",
        (ModuleKind::LayerNorm, "bias") => "beta",
        _ => return None,
    };
    Some(format!("{axon}.{suffix}"))
}

/// [`model_layout`] of options given as a structured value (TypeScript names; what the
/// bindings' `parameterLayout` take).
///
/// # Errors
/// [`crate::Error::InvalidOption`] / [`crate::Error::OutOfMemory`] from
/// [`GqaConfig::from_value`].
pub fn model_layout_of(options: serde_json::Value) -> crate::Result<Vec<ParamSpec>> {
    Ok(model_layout(&GqaConfig::from_value(options)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_indices_and_axon_names_agree() {
        let cfg: GqaConfig = serde_json::from_str(
            r#"{"embedDim": 3, "hiddenSize": 8, "numHeads": 4, "numKvHeads": 2, "numLayers": 2}"#,
        )
        .unwrap();
        let rows = model_layout(&cfg);
        assert_eq!(rows.len(), 2 + 2 * PARAMS_PER_BLOCK + 2);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.stream, i as u64);
            assert_eq!(
                axon_name(&r.name).as_deref(),
                Some(r.axon_name.as_str()),
                "{}",
                r.name
            );
        }
        assert_eq!(
            rows.iter().map(ParamSpec::count).sum::<u128>(),
            param_count_u128(&cfg)
        );
        assert_eq!(
            rows[2 + BlockModule::KProj.first_param()].name,
            "blocks.0.attn.k_proj.weight"
        );
        assert_eq!(rows[2 + BlockModule::KProj.first_param()].shape, [4, 8]);
        assert_eq!(axon_name("blocks.0.attn.nope.weight"), None);
    }
}
