//! Model options (SPEC section 1), their defaults, validation and sizes.
//!
//! Source: `Edifice.Attention.GQA.build/1` options (the seed: Edifice's documentation of `Edifice.Attention.GQA`), with the
//! stricter rules of SPEC section 1 (e.g. `hiddenSize` must divide by `numHeads`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{check_f32_buffer, Error, Result};
use crate::rope::{RopePlan, RopeScaling};

/// What the model returns from the final hidden states `h: [B, T, H]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// `h[:, T-1, :]` (or `h[b, L_b-1, :]` with lengths): `[B, H]`. Edifice's default.
    #[default]
    LastTimestep,
    /// Every position: `[B, T, H]`, zeros at padded positions.
    All,
    /// Mean over the (unpadded) positions: `[B, H]`.
    MeanPool,
}

impl OutputMode {
    /// The option string (`"last_timestep"`, `"all"`, `"mean_pool"`).
    pub fn as_str(self) -> &'static str {
        match self {
            OutputMode::LastTimestep => "last_timestep",
            OutputMode::All => "all",
            OutputMode::MeanPool => "mean_pool",
        }
    }
}

/// Defines an options struct: its own leading fields, then the attention options that the model
/// ([`GqaConfig`]) and the attention layer ([`crate::AttentionConfig`]) share, then its own
/// trailing fields. The shared options (name, type, serde default, doc) are written once, here;
/// the macro also gives the struct `attention()` (the shared options as an
/// [`crate::AttentionConfig`]) and `set_attention()` (overwrite them from one), so no list of them
/// is restated elsewhere. Defaults live only in the `#[serde(default = ...)]` attributes.
macro_rules! options_with_attention {
    (
        $(#[$m:meta])*
        pub struct $name:ident {
            $( $(#[$hm:meta])* pub $hf:ident : $ht:ty, )*
            ..attention_options,
            $( $(#[$tm:meta])* pub $tf:ident : $tt:ty, )*
        }
    ) => {
        $(#[$m])*
        pub struct $name {
            $( $(#[$hm])* pub $hf: $ht, )*
            /// Model width `H` (`:hidden_size`), the width of attention input and output,
            /// default 256; divisible by `numHeads` unless `headDim` is given.
            #[serde(default = "crate::config::d_hidden")]
            pub hidden_size: usize,
            /// Explicit per-head width `D` (`headDim`, >= 1); default `hiddenSize / numHeads`.
            /// With it, `q_proj` is `[numHeads*D, H]`, `k_proj`/`v_proj` `[numKvHeads*D, H]`,
            /// `out_proj` `[H, numHeads*D]` and the attention scale is `1/sqrt(D)` (as Hugging
            /// Face's `head_dim`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub head_dim: Option<usize>,
            /// Query heads `NH` (`:num_heads`), default 8.
            #[serde(default = "crate::config::d_heads")]
            pub num_heads: usize,
            /// Key/value heads `NKV` (`:num_kv_heads`), default 2; divides `numHeads`
            /// (1 = multi-query, `numHeads` = multi-head attention).
            #[serde(default = "crate::config::d_kv_heads")]
            pub num_kv_heads: usize,
            /// Rotary position embedding on Q and K (half rotation, base `ropeTheta`), default
            /// false.
            #[serde(default)]
            pub rope: bool,
            /// Rotary base `theta` (`ropeTheta`, finite > 0), default 10000.
            #[serde(default = "crate::config::d_rope_theta")]
            pub rope_theta: f64,
            /// Rotary scaling as Hugging Face transformers defines it (see
            /// [`crate::rope::RopeScaling`]); implies rotary; exclusive with `yarn`. Invalid values
            /// name `ropeScaling.<field>`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub rope_scaling: Option<crate::rope::RopeScaling>,
            /// Rotary frequency scaling that Edifice names YaRN (SPEC section 5; not Hugging Face's
            /// yarn, see `ropeScaling`); implies rotary; default false.
            #[serde(default)]
            pub yarn: bool,
            /// Scale `s` of Edifice's YaRN (> 0), default 8.
            #[serde(default = "crate::config::d_yarn_scale")]
            pub yarn_scale: f64,
            /// Original context length of the YaRN ramp (>= 1), default 2048.
            #[serde(default = "crate::config::d_yarn_orig")]
            pub yarn_original_max_position: usize,
            /// Sliding-window attention `W` (`slidingWindow`, >= 1; absent = full causal): query
            /// position `p` reads key `j` when `p - W < j <= p` (W keys, Hugging Face's
            /// `sliding_window` as `transformers.masking_utils.sliding_window_overlay` defines
            /// it; Mistral, Qwen2), at every layer. SPEC section 7.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub sliding_window: Option<usize>,
            $( $(#[$tm])* pub $tf: $tt, )*
            /// Seed of the weight initialisation, default 0. The same seed gives bitwise the same
            /// weights on every backend (SPEC section 3).
            #[serde(default)]
            pub seed: u64,
        }

        impl $name {
            /// The attention options of these options (for a model: its blocks' attention).
            pub fn attention(&self) -> crate::AttentionConfig {
                crate::AttentionConfig {
                    hidden_size: self.hidden_size,
                    head_dim: self.head_dim,
                    num_heads: self.num_heads,
                    num_kv_heads: self.num_kv_heads,
                    rope: self.rope,
                    rope_theta: self.rope_theta,
                    rope_scaling: self.rope_scaling.clone(),
                    yarn: self.yarn,
                    yarn_scale: self.yarn_scale,
                    yarn_original_max_position: self.yarn_original_max_position,
                    sliding_window: self.sliding_window,
                    seed: self.seed,
                }
            }

            /// Overwrites the attention options with those of `a` (the other fields are kept).
            pub fn set_attention(&mut self, a: &crate::AttentionConfig) {
                let crate::AttentionConfig { hidden_size, head_dim, num_heads, num_kv_heads, rope, rope_theta, rope_scaling, yarn, yarn_scale, yarn_original_max_position, sliding_window, seed } = a.clone();
                (self.hidden_size, self.head_dim, self.num_heads, self.num_kv_heads) = (hidden_size, head_dim, num_heads, num_kv_heads);
                (self.rope, self.rope_theta, self.rope_scaling) = (rope, rope_theta, rope_scaling);
                (self.yarn, self.yarn_scale, self.yarn_original_max_position, self.seed) = (yarn, yarn_scale, yarn_original_max_position, seed);
                self.sliding_window = sliding_window;
            }
        }
    };
}
pub(crate) use options_with_attention;

options_with_attention! {
    /// Model options (SPEC section 1; Edifice's names in parentheses, Edifice's defaults): the
    /// options shared with the attention layer plus the model's own. Only `embedDim` is
    /// required. Validation lives in the core ([`GqaConfig::validate`]): a bad value fails with
    /// `INVALID_OPTION` naming it.
    ///
    /// Serialises to/from JSON with the TypeScript (camelCase) names; this JSON is what the
    /// bindings pass in and what a saved safetensors file carries in its metadata (key
    /// `gqa_config`). The options shared with the attention layer are defined once, by
    /// `options_with_attention!` (see [`GqaConfig::attention`]).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct GqaConfig {
        /// Input features per timestep `E` (`:embed_dim`); required, an integer >= 1.
        pub embed_dim: usize,
        /// Pre-norm blocks (`:num_layers`), default 4.
        #[serde(default = "d_layers")]
        pub num_layers: usize,
        /// Dropout probability in `[0, 1)`, used only in training, default 0.1.
        #[serde(default = "d_dropout")]
        pub dropout: f64,
        ..attention_options,
        /// Expected sequence length `T` in timesteps (`:window_size`), a sizing hint only: any
        /// length >= 1 works; default 60. Formerly `windowSize`, which is still read (deprecated;
        /// not both names in one object).
        #[serde(default = "d_seq_len_hint", alias = "windowSize")]
        pub seq_len_hint: usize,
        /// How the final hidden states become the output (see [`OutputMode`]), default
        /// `last_timestep`.
        #[serde(default)]
        pub output_mode: OutputMode,
    }
}

pub(crate) fn d_hidden() -> usize {
    256
}
pub(crate) fn d_heads() -> usize {
    8
}
pub(crate) fn d_kv_heads() -> usize {
    2
}
fn d_layers() -> usize {
    4
}
fn d_dropout() -> f64 {
    0.1
}
pub(crate) fn d_rope_theta() -> f64 {
    crate::rope::ROPE_BASE
}
pub(crate) fn d_yarn_scale() -> f64 {
    8.0
}
pub(crate) fn d_yarn_orig() -> usize {
    2048
}
fn d_seq_len_hint() -> usize {
    60
}

/// A former option name the core still reads, deprecated: a `#[serde(alias)]` on the field that
/// now has another name. Listed in [`DEPRECATED_OPTION_NAMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeprecatedName {
    /// The former JSON (camelCase) name, e.g. `windowSize`.
    pub name: &'static str,
    /// The option's current JSON name, e.g. `seqLenHint`.
    pub use_instead: &'static str,
    /// Why it was renamed (one sentence, for docs and generated TypeScript).
    pub reason: &'static str,
}

/// Every deprecated option name of [`GqaConfig`] (and [`RecommendedDefaults`]): each is a serde
/// alias, so options and saved model files (`gqa_config` metadata) that use it still load; an
/// object that has both names is rejected with [`Error::InvalidOption`] naming the old one. The
/// options schema carries this list as `x-deprecatedNames` ([`crate::schema::options_schema`]).
pub const DEPRECATED_OPTION_NAMES: &[DeprecatedName] = &[DeprecatedName {
    name: "windowSize",
    use_instead: "seqLenHint",
    reason: "it is a sizing hint for the expected sequence length, not a sliding attention \
             window; options and model files that use the old name still load",
}];

/// Edifice's `recommended_defaults/0`: the defaults of the main options (SPEC section 1), what
/// `recommendedDefaults()` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecommendedDefaults {
    /// Default model width `H`: 256.
    pub hidden_size: usize,
    /// Default query heads: 8.
    pub num_heads: usize,
    /// Default key/value heads: 2.
    pub num_kv_heads: usize,
    /// Default pre-norm blocks: 4.
    pub num_layers: usize,
    /// Default expected sequence length `T` (a sizing hint, Edifice's `:window_size`): 60.
    #[serde(alias = "windowSize")]
    pub seq_len_hint: usize,
    /// Default dropout probability: 0.1.
    pub dropout: f64,
}

/// Edifice's `recommended_defaults/0`: the options' defaults (read from [`GqaConfig::new`], so
/// they are the serde defaults above and cannot disagree with them).
pub fn recommended_defaults() -> RecommendedDefaults {
    let d = GqaConfig::new(1);
    RecommendedDefaults {
        hidden_size: d.hidden_size,
        num_heads: d.num_heads,
        num_kv_heads: d.num_kv_heads,
        num_layers: d.num_layers,
        seq_len_hint: d.seq_len_hint,
        dropout: d.dropout,
    }
}

impl GqaConfig {
    /// A config with `embed_dim` and every other option at its default.
    pub fn new(embed_dim: usize) -> Self {
        let mut cfg: GqaConfig =
            serde_json::from_str(r#"{"embedDim": 1}"#).expect("every other option has a default");
        cfg.embed_dim = embed_dim;
        cfg
    }

    /// Parses options from JSON (TypeScript names) and validates them.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a missing `embedDim`, an unknown option, a value of the
    /// wrong type, or any rule of [`GqaConfig::validate`].
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_value(json_text(json, "options")?)
    }

    /// [`GqaConfig::from_json`] of options given as a structured value (what the bindings pass;
    /// `Value::Null` = no options, which fails for the missing `embedDim`).
    ///
    /// # Errors
    /// As [`GqaConfig::from_json`].
    pub fn from_value(value: serde_json::Value) -> Result<Self> {
        let cfg: GqaConfig =
            parse_value(value, "options", "", "a known option (see SPEC section 1)")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The options as JSON with TypeScript names (every option written out).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }

    /// Checks every rule of SPEC section 1.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the option, the rule and the value found;
    /// [`Error::OutOfMemory`] when the parameters would not fit in one buffer.
    pub fn validate(&self) -> Result<()> {
        self.validate_sizes()?;
        self.validate_scalars()?;
        self.validate_rotary()?;
        self.validate_memory()
    }

    /// Head and layer counts and widths: integers >= 1, `hiddenSize` a multiple of `numHeads`
    /// (unless `headDim` is given), `numKvHeads` a divisor of `numHeads`.
    fn validate_sizes(&self) -> Result<()> {
        let at_least_one = [
            ("embedDim", self.embed_dim),
            ("hiddenSize", self.hidden_size),
            ("numHeads", self.num_heads),
            ("numKvHeads", self.num_kv_heads),
            ("numLayers", self.num_layers),
        ];
        for (name, value) in at_least_one {
            if value < 1 {
                return Err(Error::option(name, "an integer >= 1", value));
            }
        }
        if self.head_dim == Some(0) {
            return Err(Error::option("headDim", "an integer >= 1", 0));
        }
        if self.sliding_window == Some(0) {
            return Err(Error::option(
                "slidingWindow",
                "an integer >= 1 (keys per query, Hugging Face's sliding_window)",
                0,
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(Error::option(
                "hiddenSize",
                format!(
                    "a multiple of numHeads={} (or an explicit headDim)",
                    self.num_heads
                ),
                self.hidden_size,
            ));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(Error::option(
                "numKvHeads",
                format!("a divisor of numHeads={}", self.num_heads),
                self.num_kv_heads,
            ));
        }
        Ok(())
    }

    /// Dropout, the yarn parameters, the sequence-length hint and the rotary base.
    fn validate_scalars(&self) -> Result<()> {
        if !(self.dropout >= 0.0 && self.dropout < 1.0) {
            return Err(Error::option(
                "dropout",
                "a probability 0 <= p < 1",
                self.dropout,
            ));
        }
        if !(self.yarn_scale > 0.0 && self.yarn_scale.is_finite()) {
            return Err(Error::option(
                "yarnScale",
                "a finite number > 0",
                self.yarn_scale,
            ));
        }
        if self.yarn_original_max_position < 1 {
            return Err(Error::option(
                "yarnOriginalMaxPosition",
                "an integer >= 1",
                self.yarn_original_max_position,
            ));
        }
        if self.seq_len_hint < 1 {
            return Err(Error::option(
                "seqLenHint",
                "an integer >= 1",
                self.seq_len_hint,
            ));
        }
        if !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            return Err(Error::option(
                "ropeTheta",
                "a finite number > 0",
                self.rope_theta,
            ));
        }
        Ok(())
    }

    /// `ropeScaling` (exclusive with `yarn`, its own fields) and an even `headDim` with rotary.
    fn validate_rotary(&self) -> Result<()> {
        if let Some(s) = &self.rope_scaling {
            if self.yarn {
                return Err(Error::option(
                    "ropeScaling",
                    "either ropeScaling (Hugging Face rotary scaling) or yarn: true (Edifice's scaling), not both",
                    format!("ropeScaling of type {} with yarn: true", s.type_name()),
                ));
            }
            s.validate()?;
            if matches!(s, RopeScaling::Dynamic { .. }) && self.head_dim() == 2 {
                return Err(Error::option(
                    "headDim",
                    "headDim >= 4 with dynamic ropeScaling (the NTK exponent is d/(d-2))",
                    2,
                ));
            }
        }
        if self.uses_rotary() && self.head_dim.is_some() && !self.head_dim().is_multiple_of(2) {
            return Err(Error::option(
                "headDim",
                "an even headDim when rope, yarn or ropeScaling is on",
                self.head_dim(),
            ));
        }
        if self.uses_rotary() && !self.head_dim().is_multiple_of(2) {
            return Err(Error::option(
                "hiddenSize",
                format!(
                    "an even headDim (hiddenSize / numHeads) when rope, yarn or ropeScaling is on (numHeads={})",
                    self.num_heads
                ),
                format!("{} (headDim={})", self.hidden_size, self.head_dim()),
            ));
        }
        Ok(())
    }

    /// The largest single weight and the whole parameter set must be addressable and fit the
    /// memory budget ([`crate::memory::limit`]); the rotary tables must be finite.
    fn validate_memory(&self) -> Result<()> {
        check_f32_buffer("ffn_up.weight", &[4, self.hidden_size, self.hidden_size])?;
        check_f32_buffer(
            "input_projection.weight",
            &[self.hidden_size, self.embed_dim],
        )?;
        check_f32_buffer(
            "q_proj.weight",
            &[self.num_heads, self.head_dim(), self.hidden_size],
        )?;
        crate::rope::check_finite_tables(self)?;
        // Parameters plus their per-tensor bookkeeping (bounds numLayers by the budget).
        let bytes = crate::layout::resident_bytes_u128(self);
        let limit = crate::memory::limit();
        if bytes > limit as u128 {
            return Err(Error::OutOfMemory {
                what: "parameters".into(),
                requested: u64::try_from(bytes).unwrap_or(u64::MAX),
                limit,
                in_use: crate::memory::in_use(),
            });
        }
        Ok(())
    }

    /// Whether rotary embeddings are applied (`rope || yarn || ropeScaling`).
    pub fn uses_rotary(&self) -> bool {
        self.rope || self.yarn || self.rope_scaling.is_some()
    }

    /// `headDim`: the explicit option, else `hiddenSize / numHeads`.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_heads.max(1))
    }

    /// How the rotary tables are made (`None` without rotary), see [`RopePlan`].
    pub fn rope_plan(&self) -> Option<RopePlan> {
        let yarn = self
            .yarn
            .then_some((self.yarn_scale, self.yarn_original_max_position));
        RopePlan::new(
            self.head_dim(),
            self.uses_rotary(),
            self.rope_theta,
            yarn,
            self.rope_scaling.as_ref(),
        )
    }

    /// `qDim = numHeads * headDim`.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim()
    }

    /// `kvDim = numKvHeads * headDim`.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim()
    }

    /// Query heads per KV head: `group = numHeads / numKvHeads`.
    pub fn group(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Whether the model has an input projection (`embedDim != hiddenSize`).
    pub fn has_input_projection(&self) -> bool {
        self.embed_dim != self.hidden_size
    }

    /// Edifice's `output_size/1`: `hiddenSize` (last dimension of the output).
    pub fn output_size(&self) -> usize {
        self.hidden_size
    }

    /// Edifice's approximate `param_count/1`: projection matrices only, no biases or norms:
    /// `inputProj + numLayers * (2*H*qDim + 2*H*kvDim + 8*H*H)`, `inputProj = embedDim*H` when
    /// `embedDim != H`.
    pub fn param_count(&self) -> u64 {
        let h = self.hidden_size as u64;
        let input = if self.has_input_projection() {
            self.embed_dim as u64 * h
        } else {
            0
        };
        let per_layer = 2 * h * self.q_dim() as u64 + 2 * h * self.kv_dim() as u64 + 8 * h * h;
        input + self.num_layers as u64 * per_layer
    }

    /// Every parameter (weights, biases, LayerNorm gamma and beta), as listed in SPEC section 3.
    pub fn param_count_exact(&self) -> u64 {
        u64::try_from(self.param_count_exact_u128()).unwrap_or(u64::MAX)
    }

    /// What validation bounds by the memory limit: the parameters (f32) plus
    /// [`crate::memory::PER_TENSOR_BYTES`] of bookkeeping per parameter tensor.
    pub fn resident_bytes(&self) -> u64 {
        u64::try_from(crate::layout::resident_bytes_u128(self)).unwrap_or(u64::MAX)
    }

    fn param_count_exact_u128(&self) -> u128 {
        crate::layout::param_count_u128(self)
    }

    /// KV-cache bytes per cached token (F32): `2 * numLayers * numKvHeads * headDim * 4`
    /// (SPEC section 4).
    pub fn kv_cache_bytes_per_token(&self) -> u64 {
        2 * self.num_layers as u64 * self.num_kv_heads as u64 * self.head_dim() as u64 * 4
    }
}

/// A value the bindings hand to JavaScript (a config, report or table) as a
/// [`serde_json::Value`], which napi-rs and `serde-wasm-bindgen` turn into a plain JS object: the
/// same object on both backends (a non-finite float becomes `null`, as in JSON).
///
/// # Errors
/// [`Error::Internal`] if `T` does not serialise (a map with non-string keys; none of gqa's types).
pub fn to_value<T: Serialize>(t: &T) -> Result<serde_json::Value> {
    serde_json::to_value(t)
        .map_err(|e| Error::Internal(format!("serialising a value for JavaScript: {e}")))
}

/// The `f64` nearest the shortest decimal that reads back as `x` (`0.1f32` -> `0.1`, not
/// `0.10000000149011612`): how f32 options and results are written, so that JavaScript reads
/// back the number that was passed, as JSON text (`ryu`) would give it.
pub(crate) fn f32_decimal(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(x as f64)
}

/// `serialize_with` of an `f32` field: [`f32_decimal`].
pub(crate) fn ser_f32_decimal<S: serde::Serializer>(
    x: &f32,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(f32_decimal(*x))
}

/// `serialize_with` of an `Option<Vec<f32>>` field: each value as [`f32_decimal`].
pub(crate) fn ser_f32s_decimal<S: serde::Serializer>(
    xs: &Option<Vec<f32>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    xs.as_ref()
        .map(|v| v.iter().map(|&x| f32_decimal(x)).collect::<Vec<f64>>())
        .serialize(s)
}

/// Options text -> [`serde_json::Value`] (an empty or all-whitespace string = no options =
/// `Value::Null`, so the text and value entry points share one path). A syntax error is
/// [`Error::InvalidOption`] naming `what`.
pub(crate) fn json_text(json: &str, what: &str) -> Result<serde_json::Value> {
    if json.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(json).map_err(|e| {
        let msg = e.to_string();
        Error::option(
            what,
            format!("a JSON object of {what}"),
            msg.split(" at line ").next().unwrap_or(&msg),
        )
    })
}

/// Parses an options object given as a structured value: what both bindings pass (a JS object
/// converted by napi-rs's `serde-json` support or by `serde-wasm-bindgen`), and what
/// [`json_text`] reads text into. Serde's errors become [`Error::InvalidOption`] naming the field
/// (`prefix` + its name, e.g. `head.numClasses`), the expectation and the value (`what` names the
/// whole object when it is not an object at all; `known` is the hint for an unknown field).
/// `Value::Null` reads as `{}` (no options). Used for model, head, fit and load options alike.
///
/// JavaScript has one number type, so a number with no fractional part is read as an integer
/// first ([`integral_numbers`]): napi-rs hands integers beyond `u32::MAX` over as floats, and the
/// same options must mean the same on every backend (and as JSON text, where `5e9` and
/// `5000000000` are both what `JSON.stringify` of that number could write).
pub(crate) fn parse_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    what: &str,
    prefix: &str,
    known: &str,
) -> Result<T> {
    let mut value = if value.is_null() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        value
    };
    integral_numbers(&mut value);
    // Options are small; the copy lets an error inside a tagged enum name its field.
    let kept = value.clone();
    serde_path_to_error::deserialize(value)
        .map_err(|e| json_option_error(&e, &kept, what, prefix, known))
}

/// The field of an internally tagged enum (`head`, `ropeScaling`: objects with a `type` key) that a
/// serde error is about. serde reads such an enum from a buffer, so the error's path stops at the
/// enum; the field is found as the one whose value is the one the message quotes (`string "3"`,
/// `` integer `2` ``, `` unknown variant `l1` ``), when exactly one matches.
fn tagged_enum_field(value: &serde_json::Value, path: &str, msg: &str) -> Option<String> {
    use serde_json::Value;
    let mut at = value;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        at = at.get(seg)?;
    }
    let obj = at.as_object()?;
    if !obj.contains_key("type") {
        return None;
    }
    let quoted = |s: &str| msg.contains(&format!("{s:?}")) || msg.contains(&format!("`{s}`"));
    let hits: Vec<&String> = obj
        .iter()
        .filter(|(_, x)| match x {
            Value::String(s) => quoted(s),
            Value::Number(n) => quoted(&n.to_string()),
            Value::Bool(b) => quoted(&b.to_string()),
            Value::Null => msg.contains("null") || msg.contains("unit value"),
            Value::Array(_) => msg.contains("sequence"),
            Value::Object(_) => msg.contains("map"),
        })
        .map(|(k, _)| k)
        .collect();
    match hits.as_slice() {
        [k] => Some(if path == "." || path.is_empty() {
            (*k).clone()
        } else {
            format!("{path}.{k}")
        }),
        _ => None,
    }
}

/// Rewrites every float with no fractional part inside the `u64` / `i64` range as an integer
/// (iteratively: the value may be as deep as its source allowed).
fn integral_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    const U64_END: f64 = 18_446_744_073_709_551_616.0; // 2^64
    const I64_MIN: f64 = -9_223_372_036_854_775_808.0; // -2^63
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && (0.0..U64_END).contains(&f) {
                    *n = (f as u64).into();
                } else if f.fract() == 0.0 && (I64_MIN..0.0).contains(&f) {
                    *n = (f as i64).into();
                }
            }
            Value::Array(a) => stack.extend(a.iter_mut()),
            Value::Object(m) => stack.extend(m.values_mut()),
            _ => {}
        }
    }
}

/// For a field given under both its name `q` and a deprecated alias (serde reports the duplicate
/// by the field's name): the alias, the one to drop, and the value it was given at `path`.
fn deprecated_duplicate(
    value: &serde_json::Value,
    path: &str,
    q: &str,
) -> Option<(&'static str, String)> {
    let old = DEPRECATED_OPTION_NAMES
        .iter()
        .find(|d| d.use_instead == q)?
        .name;
    let mut at = value;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        at = at.get(seg).unwrap_or(&serde_json::Value::Null);
    }
    let found = at
        .get(old)
        .map_or("both names".to_string(), |v| v.to_string());
    Some((old, found))
}

/// Maps a serde error on an options JSON to [`Error::InvalidOption`], naming the field.
fn json_option_error(
    e: &serde_path_to_error::Error<serde_json::Error>,
    value: &serde_json::Value,
    what: &str,
    prefix: &str,
    known: &str,
) -> Error {
    let path = e.path().to_string();
    let msg = e.inner().to_string();
    // Messages look like "unknown field `foo`, expected one of ...", "missing field `embedDim`"
    // or "invalid type: string \"a\", expected usize at line 1 column 20".
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    let name = |n: String| format!("{prefix}{n}");
    // The field name sits between "field `" and the backtick before ", expected" (or the last
    // one): names may themselves hold backticks.
    let quoted = |head: &str| {
        let rest = msg.strip_prefix(head)?;
        let end = rest.find("`, expected").or_else(|| rest.rfind('`'))?;
        Some(rest[..end].to_string())
    };
    // The path names the object holding the field (or, for an unknown field at the top level, the
    // field itself; inside an internally tagged enum such as `ropeScaling`, the enum).
    let nested = |q: String| {
        if path == "." || path.is_empty() || path == q || path.ends_with(&format!(".{q}")) {
            if path == "." || path.is_empty() {
                q
            } else {
                path.clone()
            }
        } else {
            format!("{path}.{q}")
        }
    };
    // "invalid type: string \"3\", expected usize" -> (expected, found).
    let split = || match msg.split_once(", expected ") {
        Some((found, expected)) => (
            expected.to_string(),
            found
                .trim_start_matches("invalid type: ")
                .trim_start_matches("invalid value: ")
                .to_string(),
        ),
        None => ("a valid value".to_string(), msg.clone()),
    };
    if let Some(q) = quoted("duplicate field `") {
        match deprecated_duplicate(value, &path, &q) {
            Some((old, found)) => Error::option(
                &name(nested(old.to_string())),
                format!("only one of {q} and {old} (its deprecated name)"),
                found,
            ),
            None => Error::option(&name(nested(q)), "the option once", "a duplicate"),
        }
    } else if msg.starts_with("missing field") {
        Error::option(
            &name(quoted("missing field `").map(nested).unwrap_or(path)),
            "a value (this option is required)",
            "nothing",
        )
    } else if msg.starts_with("unknown field") {
        Error::option(
            &name(quoted("unknown field `").map(nested).unwrap_or(path)),
            known,
            "an unknown option",
        )
    } else if let Some(field) = tagged_enum_field(value, &path, &msg) {
        // Inside `head` or `ropeScaling`, including an unknown `type` or `loss`.
        let (expected, found) = if msg.starts_with("unknown variant") {
            let (found, expected) = msg
                .split_once(", expected ")
                .unwrap_or((&msg, "a known value"));
            (expected.to_string(), found.to_string())
        } else {
            split()
        };
        Error::option(&name(field), expected, found)
    } else if msg.starts_with("unknown variant") {
        let (found, expected) = msg
            .split_once(", expected ")
            .unwrap_or((&msg, "a known value"));
        Error::option(
            &if path == "." {
                what.to_string()
            } else {
                name(path.clone())
            },
            expected.to_string(),
            found.to_string(),
        )
    } else if path == "." {
        Error::option(what, format!("a JSON object of {what}"), msg)
    } else {
        let (expected, found) = split();
        Error::option(&name(path), expected, found)
    }
}
