//! The grouped-query attention layer (SPEC section 2, step 2; `buildGqaAttention` on its own).
//!
//! `q = a Wq^T + bq: [B,T,qDim]`, `k = a Wk^T + bk`, `v = a Wv^T + bv: [B,T,kvDim]`, heads
//! `q: [B,NH,T,D]`, `k,v: [B,NKV,T,D]`, optional rotary on q and k, query head `i` reads KV
//! head `i / group`, causal mask plus per-sequence key lengths, `o Wo^T + bo: [B,T,H]`.
//! The split [`GqaAttention::qkv`] / [`GqaAttention::attend`] is the KV-cache seam: a session
//! appends the `k`, `v` of new positions (rotated with `offset` = cache length) to its cache
//! and calls `attend` with the whole cached K/V and an [`AttnMask`] built with that offset.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::{json_text, parse_value, GqaConfig};
use crate::error::{Error, Result};
use crate::input::{check_dims, valid_mask, zero_padded};
use crate::kernels::{fused, reference};
use crate::nn::Linear;
use crate::params::ParamStore;
use crate::rope::{RopePlan, RopeScaling, Rotary};

crate::config::options_with_attention! {
    /// Options of the attention layer alone (`buildGqaAttention`), TypeScript names, Edifice's
    /// defaults: exactly the model's attention options ([`GqaConfig`] defines the same fields
    /// through the same `options_with_attention!`, so names, defaults and docs cannot drift).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct AttentionConfig {
        ..attention_options,
    }
}

impl Default for AttentionConfig {
    /// Every option at its default (the serde defaults, the one place they are written).
    fn default() -> Self {
        serde_json::from_str("{}").expect("every attention option has a default")
    }
}

impl AttentionConfig {
    /// The attention options of a model config (its blocks' attention); as
    /// [`GqaConfig::attention`].
    pub fn from_model(cfg: &GqaConfig) -> Self {
        cfg.attention()
    }

    /// Parses options from JSON (TypeScript names) and validates them.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the option (unknown, wrong type, or a broken rule).
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_value(json_text(json, "attention options")?)
    }

    /// [`AttentionConfig::from_json`] of options given as a structured value (what the bindings
    /// pass).
    ///
    /// # Errors
    /// As [`AttentionConfig::from_json`].
    pub fn from_value(value: serde_json::Value) -> Result<Self> {
        let cfg: AttentionConfig = parse_value(
            value,
            "attention options",
            "",
            "a known attention option (SPEC section 1)",
        )?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The options as JSON (TypeScript names, every option written).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }

    /// Attention options of a Hugging Face Llama / Mistral / Qwen2-style `config.json` (the
    /// parsed JSON object as text): `hidden_size`, `num_attention_heads`,
    /// `num_key_value_heads` (default `num_attention_heads`), `head_dim` (default
    /// `hidden_size / num_attention_heads`), rotary always on with base `rope_theta` (default
    /// 10000) and the scaling of `rope_scaling` (transformers 4 form, with `rope_type` or the old
    /// `type` key) or `rope_parameters` (transformers 5 form, which also carries `rope_theta`).
    /// As transformers' `standardize_rope_params` and rope init functions do: yarn/llama3 take
    /// `original_max_position_embeddings` from the top-level key if present, else from the
    /// scaling dict, else `max_position_embeddings`; yarn without `factor` uses
    /// `max_position_embeddings / original_max_position_embeddings`; `dynamic` uses
    /// `max_position_embeddings` as its `originalMaxPositionEmbeddings`. Seed 0.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming `hfConfig.<key>`: not a JSON object, a missing or
    /// non-integer size, an unsupported `rope_type` (`longrope`, ...), `partial_rotary_factor`
    /// other than 1, a missing `max_position_embeddings` where it is needed, then every rule of
    /// [`AttentionConfig::validate`].
    pub fn from_hf_config(json: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::option("hfConfig", "a JSON object (a parsed config.json)", e))?;
        let o = v.as_object().ok_or_else(|| {
            Error::option(
                "hfConfig",
                "a JSON object (a parsed config.json)",
                short(&v),
            )
        })?;
        let get = |k: &str| o.get(k).filter(|x| !x.is_null());
        let uint = |k: &str| hf_uint(k, get(k));
        let req = |k: &str| -> Result<usize> {
            uint(k)?.ok_or_else(|| {
                Error::option(&format!("hfConfig.{k}"), "a value (required)", "nothing")
            })
        };
        let hidden = req("hidden_size")?;
        let heads = req("num_attention_heads")?;
        let kv_heads = uint("num_key_value_heads")?.unwrap_or(heads);
        let head_dim = uint("head_dim")?;
        let max_pos = uint("max_position_embeddings")?;
        let top_orig = uint("original_max_position_embeddings")?;
        // The rope dict: transformers 5's `rope_parameters`, else `rope_scaling`.
        let (rp_key, rp) = match (get("rope_parameters"), get("rope_scaling")) {
            (Some(p), _) => ("rope_parameters", Some(p)),
            (None, Some(p)) => ("rope_scaling", Some(p)),
            (None, None) => ("rope_scaling", None),
        };
        let rp = match rp {
            Some(x) => Some(x.as_object().ok_or_else(|| {
                Error::option(
                    &format!("hfConfig.{rp_key}"),
                    "a JSON object or null",
                    short(x),
                )
            })?),
            None => None,
        };
        let rget = |k: &str| rp.and_then(|m| m.get(k)).filter(|x| !x.is_null());
        let num = |k: &str, x: Option<&serde_json::Value>| -> Result<Option<f64>> {
            match x {
                None => Ok(None),
                Some(x) => x
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| Error::option(&format!("hfConfig.{k}"), "a number", short(x))),
            }
        };
        let theta = match num(&format!("{rp_key}.rope_theta"), rget("rope_theta"))? {
            Some(t) => t,
            None => num("rope_theta", get("rope_theta"))?.unwrap_or(crate::rope::ROPE_BASE),
        };
        let prf_key = format!("{rp_key}.partial_rotary_factor");
        let prf = match num(&prf_key, rget("partial_rotary_factor"))? {
            Some(x) => Some((prf_key, x)),
            None => num("partial_rotary_factor", get("partial_rotary_factor"))?
                .map(|x| ("partial_rotary_factor".to_string(), x)),
        };
        if let Some((k, f)) = prf {
            if f != 1.0 {
                return Err(Error::option(
                    &format!("hfConfig.{k}"),
                    "1 (partial rotary is not supported)",
                    f,
                ));
            }
        }
        let (type_key, ty) = match (rget("rope_type"), rget("type")) {
            (Some(t), _) => ("rope_type", Some(t)),
            (None, Some(t)) => ("type", Some(t)),
            (None, None) => ("rope_type", None),
        };
        let ty = match ty {
            None => "default".to_string(),
            Some(t) => t
                .as_str()
                .ok_or_else(|| {
                    Error::option(
                        &format!("hfConfig.{rp_key}.{type_key}"),
                        "a string",
                        short(t),
                    )
                })?
                .to_string(),
        };
        let f = |k: &str| num(&format!("{rp_key}.{k}"), rget(k));
        let need = |k: &str, x: Option<f64>| {
            x.ok_or_else(|| {
                Error::option(
                    &format!("hfConfig.{rp_key}.{k}"),
                    format!("a value (required for rope_type {ty})"),
                    "nothing",
                )
            })
        };
        let rint = |k: &str| hf_uint(&format!("{rp_key}.{k}"), rget(k));
        let orig = || -> Result<usize> {
            top_orig
                .or(rint("original_max_position_embeddings")?)
                .or(max_pos)
                .ok_or_else(|| {
                    Error::option(
                        "hfConfig.max_position_embeddings",
                        format!(
                            "a value (rope_type {ty} needs it or original_max_position_embeddings)"
                        ),
                        "nothing",
                    )
                })
        };
        let scaling = match ty.as_str() {
            "default" => None,
            "linear" => Some(RopeScaling::Linear {
                factor: need("factor", f("factor")?)?,
            }),
            "dynamic" => Some(RopeScaling::Dynamic {
                factor: need("factor", f("factor")?)?,
                original_max_position_embeddings: max_pos.ok_or_else(|| {
                    Error::option(
                        "hfConfig.max_position_embeddings",
                        "a value (rope_type dynamic needs it)",
                        "nothing",
                    )
                })?,
            }),
            "yarn" => {
                let orig = orig()?;
                let factor = match f("factor")? {
                    Some(x) => x,
                    None => {
                        max_pos.ok_or_else(|| {
                            Error::option(
                                &format!("hfConfig.{rp_key}.factor"),
                                "a value (or max_position_embeddings)",
                                "nothing",
                            )
                        })? as f64
                            / orig as f64
                    }
                };
                let truncate = match rget("truncate") {
                    None => None,
                    Some(x) => Some(x.as_bool().ok_or_else(|| {
                        Error::option(
                            &format!("hfConfig.{rp_key}.truncate"),
                            "true or false",
                            short(x),
                        )
                    })?),
                };
                Some(RopeScaling::Yarn {
                    factor,
                    original_max_position_embeddings: orig,
                    beta_fast: f("beta_fast")?,
                    beta_slow: f("beta_slow")?,
                    attention_factor: f("attention_factor")?,
                    mscale: f("mscale")?,
                    mscale_all_dim: f("mscale_all_dim")?,
                    truncate,
                })
            }
            "llama3" => Some(RopeScaling::Llama3 {
                factor: need("factor", f("factor")?)?,
                low_freq_factor: need("low_freq_factor", f("low_freq_factor")?)?,
                high_freq_factor: need("high_freq_factor", f("high_freq_factor")?)?,
                original_max_position_embeddings: orig()?,
            }),
            other => {
                return Err(Error::option(
                    &format!("hfConfig.{rp_key}.{type_key}"),
                    "one of default, linear, dynamic, yarn, llama3",
                    other,
                ));
            }
        };
        let cfg = AttentionConfig {
            hidden_size: hidden,
            head_dim: Some(head_dim.unwrap_or(if heads > 0 { hidden / heads } else { 0 })),
            num_heads: heads,
            num_kv_heads: kv_heads,
            rope: true,
            rope_theta: theta,
            rope_scaling: scaling,
            ..AttentionConfig::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the rules of SPEC section 1 for these options.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the option, rule and value.
    pub fn validate(&self) -> Result<()> {
        let mut m = GqaConfig::new(self.hidden_size.max(1));
        m.num_layers = 1;
        m.set_attention(self);
        m.validate()
    }

    /// `headDim`: the explicit option, else `hiddenSize / numHeads`.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_heads.max(1))
    }

    /// Whether rotary embeddings are applied (`rope || yarn || ropeScaling`).
    pub fn uses_rotary(&self) -> bool {
        self.rope || self.yarn || self.rope_scaling.is_some()
    }

    /// How the rotary tables are made, `None` without rotary (SPEC section 5, [`RopePlan`]).
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

    /// The rotary `inv_freq` `[headDim/2]` (at sequence lengths up to a `dynamic` threshold)
    /// or `None` without rotary (SPEC section 5).
    pub fn inv_freq(&self) -> Option<Vec<f32>> {
        self.rope_plan().map(|p| p.inv_freq(0).0)
    }
}

/// A JSON value for an error message (at most 60 characters).
/// A `config.json` size: absent (or null) -> `None`; else a non-negative integer, or
/// [`Error::InvalidOption`] naming `hfConfig.{key}`.
fn hf_uint(key: &str, x: Option<&serde_json::Value>) -> Result<Option<usize>> {
    match x {
        None => Ok(None),
        Some(x) => x
            .as_u64()
            .and_then(|u| usize::try_from(u).ok())
            .map(Some)
            .ok_or_else(|| {
                Error::option(
                    &format!("hfConfig.{key}"),
                    "a non-negative integer",
                    short(x),
                )
            }),
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// Additive attention mask `[MB, Tq, Tk]` (0 = attend, `-inf` = masked), `MB` = 1 or B.
///
/// Query `i` sits at absolute position `offset + i` and may read key `j` when
/// `j <= offset + i` (causal) and `j < L_b` (per-sequence length). Key 0 is always readable.
#[derive(Debug, Clone)]
pub struct AttnMask {
    bias: Tensor,
    /// Position of query 0 (the structured form the fused kernels use).
    offset: usize,
    /// Per-sequence key lengths, if any.
    lengths: Option<Vec<usize>>,
}

impl AttnMask {
    /// Causal mask for `q_len` queries at positions `offset..offset+q_len` over `k_len` keys,
    /// with optional per-sequence lengths (`B` values, each >= 1).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] when `[B, Tq, Tk]` exceeds the buffer limit; candle errors.
    pub fn causal(
        batch: usize,
        q_len: usize,
        k_len: usize,
        offset: usize,
        lengths: Option<&[usize]>,
        device: &Device,
    ) -> Result<Self> {
        let mb = if lengths.is_some() { batch } else { 1 };
        let n = crate::error::check_f32_buffer("attention mask", &[mb, q_len, k_len])?;
        let mut m = Vec::with_capacity(n);
        for bi in 0..mb {
            let len = lengths.map_or(k_len, |ls| ls[bi]);
            for i in 0..q_len {
                for j in 0..k_len {
                    m.push(if j <= offset + i && j < len {
                        0f32
                    } else {
                        f32::NEG_INFINITY
                    });
                }
            }
        }
        Ok(AttnMask {
            bias: Tensor::from_vec(m, (mb, q_len, k_len), device)?,
            offset,
            lengths: lengths.map(<[usize]>::to_vec),
        })
    }

    /// The additive bias `[MB, Tq, Tk]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

/// The attention layer: `q_proj [qDim,H]`, `k_proj`, `v_proj [kvDim,H]`, `out_proj [H,qDim]`
/// (each with a bias), shared with the model's [`ParamStore`] when part of a model.
#[derive(Debug, Clone)]
pub struct GqaAttention {
    cfg: AttentionConfig,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    rope: Option<RopePlan>,
    params: ParamStore,
    device: Device,
    /// The parameters' bytes under the memory budget ([`crate::memory`]); `None` inside a
    /// model (the model's reservation covers them).
    memory: Option<std::sync::Arc<crate::memory::Reservation>>,
}

impl GqaAttention {
    /// A standalone attention layer, initialised from `cfg.seed` (streams 0..8 of
    /// [`crate::layout::attention_layout`]: `q_proj.weight` ... `out_proj.bias`) on the CPU.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] from [`AttentionConfig::validate`]; [`Error::OutOfMemory`]
    /// (`parameters`) when they do not fit under the memory budget ([`crate::memory`]).
    pub fn new(cfg: AttentionConfig) -> Result<Self> {
        cfg.validate()?;
        let layout = crate::layout::attention_layout(&cfg);
        let values: u128 = layout.iter().map(crate::layout::ParamSpec::count).sum();
        let bytes = u64::try_from(values.saturating_mul(4)).unwrap_or(u64::MAX);
        let memory = std::sync::Arc::new(crate::memory::reserve("parameters", bytes)?);
        let params = ParamStore::init(&layout, cfg.seed, &Device::Cpu)?;
        let mut layer = Self::from_store(cfg, params, &Device::Cpu)?;
        layer.memory = Some(memory);
        Ok(layer)
    }

    /// The layer over `params`, a store whose names are relative to the layer (`q_proj.weight`
    /// ...: the standalone table, or a block's `sub("blocks.{l}.attn.")`).
    ///
    /// # Errors
    /// [`Error::MissingParameter`] when the store lacks one.
    pub(crate) fn from_store(
        cfg: AttentionConfig,
        params: ParamStore,
        device: &Device,
    ) -> Result<Self> {
        let lin = |m: crate::layout::BlockModule| {
            Linear::from_store(&params, m.attention_name().expect("attention module"))
        };
        use crate::layout::BlockModule as M;
        let (q_proj, k_proj, v_proj, out_proj) = (
            lin(M::QProj)?,
            lin(M::KProj)?,
            lin(M::VProj)?,
            lin(M::OutProj)?,
        );
        let rope = cfg.rope_plan();
        Ok(GqaAttention {
            cfg,
            q_proj,
            k_proj,
            v_proj,
            out_proj,
            rope,
            params,
            device: device.clone(),
            memory: None,
        })
    }

    /// The options.
    pub fn config(&self) -> &AttentionConfig {
        &self.cfg
    }

    /// Parameters with names relative to the layer (`q_proj.weight`, ...).
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// FNV-1a digest of the parameters (see [`ParamStore::digest`]).
    ///
    /// # Errors
    /// [`Error::Backend`] from candle.
    pub fn weights_digest(&self) -> Result<u64> {
        self.params.digest()
    }

    /// Rotary tables for positions `0..positions` of a sequence of `positions` positions (the
    /// length a `dynamic` ropeScaling sees), or `None` without rotary.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] / [`Error::Backend`] from [`Rotary::new`].
    pub fn rotary(&self, positions: usize) -> Result<Option<Rotary>> {
        self.rope
            .as_ref()
            .map(|p| p.rotary(positions, positions, &self.device))
            .transpose()
    }

    /// Projections and rotary: `x: [B,T,H]` -> `q: [B,NH,T,D]`, `k, v: [B,NKV,T,D]`
    /// (contiguous), rotary applied at positions `offset..offset+T` when `rotary` is given.
    ///
    /// # Errors
    /// [`Error::Backend`] on a wrong input width; rotary errors.
    pub fn qkv(
        &self,
        x: &Tensor,
        rotary: Option<&Rotary>,
        offset: usize,
        track: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        let d = self.cfg.head_dim();
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, d))?.transpose(1, 2)?.contiguous()?)
        };
        let mut q = heads(self.q_proj.forward(x, track)?, self.cfg.num_heads)?;
        let mut k = heads(self.k_proj.forward(x, track)?, self.cfg.num_kv_heads)?;
        let v = heads(self.v_proj.forward(x, track)?, self.cfg.num_kv_heads)?;
        if let Some(r) = rotary {
            q = r.apply(&q, offset)?;
            k = r.apply(&k, offset)?;
        }
        Ok((q, k, v))
    }

    /// `out_proj` alone: `o: [B,Tq,qDim]` (heads concatenated) -> `[B,Tq,H]`. The KV-cache
    /// session ([`crate::session::Session`]) runs its own attention core over cache views and
    /// then calls this.
    ///
    /// # Errors
    /// [`Error::Backend`] on a wrong width.
    pub fn project_output(&self, o: &Tensor, track: bool) -> Result<Tensor> {
        self.out_proj.forward(o, track)
    }

    /// Attention core plus output projection: `q: [B,NH,Tq,D]`, `k, v: [B,NKV,Tk,D]`,
    /// `mask` `[MB,Tq,Tk]` -> `[B,Tq,H]`. Scale `1/sqrt(D)`.
    ///
    /// # Errors
    /// [`Error::Internal`] on inconsistent shapes; [`Error::Backend`].
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &AttnMask,
        track: bool,
    ) -> Result<Tensor> {
        let (b, nh, tq, d) = q.dims4()?;
        let (_, mq, mk) = mask.bias.dims3()?;
        if !track && fused::fused_ok(q) && (mq, mk) == (tq, k.dim(2)?) {
            let o = fused::attention(
                q,
                k,
                v,
                1.0 / (d as f64).sqrt(),
                &[mask.offset],
                mask.lengths.as_deref(),
                true,
            )?;
            return self.out_proj.forward(&o, false);
        }
        let o = reference::attention(q, k, v, mask.bias(), 1.0 / (d as f64).sqrt())?;
        let o = o.transpose(1, 2)?.contiguous()?.reshape((b, tq, nh * d))?;
        self.out_proj.forward(&o, track)
    }

    /// Full layer `x: [B,T,H]` -> `[B,T,H]` at positions `0..T`, differentiable through the
    /// parameters (`track = true`). `rotary` must cover `T` positions when the config uses
    /// rotary (see [`GqaAttention::rotary`]).
    ///
    /// # Shapes
    /// - `x`: `[B, T, H]`; `mask`: `[1|B, T, T]` additive; `rotary`: tables for `T` positions
    /// - inside: `q: [B, NH, T, D]`, `k, v: [B, NKV, T, D]` (query head `i` reads KV head
    ///   `i / (NH/NKV)`)
    /// - output: `[B, T, H]`
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when rotary is configured but not given; backend errors.
    pub fn forward(&self, x: &Tensor, mask: &AttnMask, rotary: Option<&Rotary>) -> Result<Tensor> {
        self.forward_t(x, mask, rotary, true)
    }

    /// [`GqaAttention::forward`] with a choice of graph tracking (`false` for inference).
    ///
    /// # Errors
    /// As [`GqaAttention::forward`].
    pub fn forward_t(
        &self,
        x: &Tensor,
        mask: &AttnMask,
        rotary: Option<&Rotary>,
        track: bool,
    ) -> Result<Tensor> {
        if self.rope.is_some() && rotary.is_none() {
            return Err(Error::input(
                "rotary",
                "rotary tables (the config has rope, yarn or ropeScaling)",
                "none",
            ));
        }
        let rotary = if self.rope.is_some() { rotary } else { None };
        if !track && fused::fused_ok(x) {
            return self.forward_fused(x, mask, rotary, None);
        }
        let (q, k, v) = self.qkv(x, rotary, 0, track)?;
        self.attend(&q, &k, &v, mask, track)
    }

    /// Inference on the fused CPU kernels: projections with folded biases, rotary in place on
    /// `[B,T,N,D]`, attention reading the projections through strides and writing `[B,T,qDim]`
    /// for `out_proj` (no head transposes or copies).
    /// `residual`: when given, returns `residual + attn(x)` (the add folded into `out_proj`'s
    /// bias pass).
    fn forward_fused(
        &self,
        x: &Tensor,
        mask: &AttnMask,
        rotary: Option<&Rotary>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, d) = (
            self.cfg.num_heads,
            self.cfg.num_kv_heads,
            self.cfg.head_dim(),
        );
        let q = self.q_proj.forward(x, false)?;
        let k = self.k_proj.forward(x, false)?;
        let v = self.v_proj.forward(x, false)?;
        let (_, mq, mk) = mask.bias.dims3()?;
        if (mq, mk) != (t, t) {
            return Err(Error::Internal(format!(
                "attention mask [{mq}, {mk}] for {t} positions"
            )));
        }
        if let Some(r) = rotary {
            fused::rotary_in_place(&q, nh, d, r.cos(), r.sin(), 0)?;
            fused::rotary_in_place(&k, nkv, d, r.cos(), r.sin(), 0)?;
        }
        let heads = |y: &Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, d))?.transpose(1, 2)?)
        };
        let o = fused::attention(
            &heads(&q, nh)?,
            &heads(&k, nkv)?,
            &heads(&v, nkv)?,
            1.0 / (d as f64).sqrt(),
            &[mask.offset],
            mask.lengths.as_deref(),
            true,
        )?;
        match residual {
            Some(r) => self.out_proj.forward_residual(&o, r, false),
            None => self.out_proj.forward(&o, false),
        }
    }

    /// Inference `h + attn(a)` on the fused CPU kernels (no dropout, no graph), or `None` when
    /// they do not apply (other device/dtype, reference kernels forced). Used by
    /// [`crate::block::GqaBlock::forward`].
    ///
    /// # Errors
    /// As [`GqaAttention::forward_t`].
    pub(crate) fn forward_fused_residual(
        &self,
        a: &Tensor,
        h: &Tensor,
        mask: &AttnMask,
        rotary: Option<&Rotary>,
    ) -> Result<Option<Tensor>> {
        if !fused::fused_ok(a) {
            return Ok(None);
        }
        if self.rope.is_some() && rotary.is_none() {
            return Err(Error::input(
                "rotary",
                "rotary tables (the config has rope, yarn or ropeScaling)",
                "none",
            ));
        }
        let rotary = if self.rope.is_some() { rotary } else { None };
        self.forward_fused(a, mask, rotary, Some(h)).map(Some)
    }

    /// Inference entry point for the bindings: `data` is `x: [B,T,H]` row-major f32 with
    /// `dims = [B,T,H]`, optional lengths (`1..=T` each). Padded input positions are ignored
    /// (NaN allowed); padded output positions are 0. Returns `(data, [B,T,H])`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for dims/length/lengths problems (T = 0 names `dims`),
    /// [`Error::OutOfMemory`] for score buffers over the limit.
    pub fn forward_f32(
        &self,
        data: &[f32],
        dims: &[usize],
        lengths: Option<&[usize]>,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        let h = self.cfg.hidden_size;
        let (b, t) = check_dims(data, dims, h, "hiddenSize", lengths)?;
        if b == 0 {
            return Ok((Vec::new(), vec![0, t, h]));
        }
        crate::error::check_f32_buffer("attention scores", &[b, self.cfg.num_heads, t, t])?;
        let qkv = self.cfg.num_heads + 2 * self.cfg.num_kv_heads;
        let d = self.cfg.head_dim();
        let _working = crate::memory::reserve_f32(
            "attention activations",
            &[&[b, t, 3 * h + qkv * d], &[2, b, self.cfg.num_heads, t, t]],
        )?;
        let x = Tensor::from_slice(data, (b, t, h), &self.device)?;
        let x = zero_padded(&x, lengths)?;
        let mask = AttnMask::causal(b, t, t, 0, lengths, &self.device)?;
        let rot = self.rotary(t)?;
        let mut y = self.forward_t(&x, &mask, rot.as_ref(), false)?;
        if let Some(ls) = lengths {
            y = y.broadcast_mul(&valid_mask(b, t, ls, &self.device)?)?;
        }
        Ok((y.flatten_all()?.to_vec1::<f32>()?, vec![b, t, h]))
    }
}

/// What the layer multiplies positions by and the factor on its cos/sin tables (SPEC section 5;
/// [`crate::rope::RopePlan`]), as `ropeFrequencies` returns them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RopeFrequencies {
    /// Inverse frequencies `[headDim / 2]`, f32, radians per position.
    pub inv_freq: Vec<f32>,
    /// Factor on cos and sin (1 except for Hugging Face `yarn` / `longrope` scaling), f32
    /// (written as its shortest decimal).
    #[serde(serialize_with = "crate::config::ser_f32_decimal")]
    pub attention_factor: f32,
}

/// The rotary frequencies of options given as a structured value (attention options, or model
/// options when it has `embedDim`) at a sequence length (only `dynamic` ropeScaling depends on
/// it). The bindings expose it as `ropeFrequencies`.
///
/// # Errors
/// [`Error::InvalidOption`] for invalid options, or options without rotary (names `rope`).
pub fn rope_frequencies(options: serde_json::Value, seq_len: usize) -> Result<RopeFrequencies> {
    let is_model = options.get("embedDim").is_some();
    let plan = if is_model {
        GqaConfig::from_value(options)?.rope_plan()
    } else {
        AttentionConfig::from_value(options)?.rope_plan()
    };
    let plan = plan.ok_or_else(|| {
        Error::option(
            "rope",
            "rotary options (rope, yarn or ropeScaling)",
            "no rotary",
        )
    })?;
    let (inv_freq, attention_factor) = plan.inv_freq(seq_len);
    Ok(RopeFrequencies {
        inv_freq,
        attention_factor,
    })
}
