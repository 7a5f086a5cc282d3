//! The grouped-query attention layer (SPEC section 2, step 2; `buildGqaAttention` on its own).
//!
//! `q = a Wq^T + bq: [B,T,qDim]`, `k = a Wk^T + bk`, `v = a Wv^T + bv: [B,T,kvDim]`, heads
//! `q: [B,NH,T,D]`, `k,v: [B,NKV,T,D]`, optional rotary on q and k, query head `i` reads KV
//! head `i / group`, causal mask plus per-sequence key lengths (and `slidingWindow`, SPEC
//! section 7), `o Wo^T + bo: [B,T,H]`.
//! The split [`GqaAttention::qkv`] / [`GqaAttention::attend`] is the KV-cache seam: a session
//! appends the `k`, `v` of new positions (rotated with `offset` = cache length) to its cache
//! and calls `attend` with the whole cached K/V and a [`Mask`] with that offset.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::compute::Engine;
use crate::config::{json_text, parse_value, GqaConfig};
use crate::error::{Error, Result};
use crate::input::{check_dims, valid_mask, zero_padded};
use crate::mask::Mask;
use crate::nn::Linear;
use crate::params::ParamStore;
use crate::rope::{RopePlan, Rotary};

crate::config::options_with_attention! {
    /// Options of the attention layer alone (`buildGqaAttention`), TypeScript names, Edifice's
    /// defaults: exactly the model's attention options ([`GqaConfig`] defines the same fields
    /// through the same `options_with_attention!`, so names, defaults and docs cannot drift).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// How the layer is computed (chosen once, [`crate::compute`]).
    engine: Engine,
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
        let engine = Engine::for_params(&Device::Cpu, &params);
        let mut layer = Self::from_store(cfg, params, &Device::Cpu, &engine)?;
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
        engine: &Engine,
    ) -> Result<Self> {
        let lin = |m: crate::layout::BlockModule| {
            Linear::from_store(&params, m.attention_name().expect("attention module"))
                .map(|l| l.with_engine(engine))
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
            engine: engine.clone(),
            memory: None,
        })
    }

    /// This layer on `placement` ([`crate::device`]): itself on the CPU in f32, else a copy
    /// of its weights on that device in that dtype (see [`crate::GqaModel::placed`]).
    ///
    /// # Errors
    /// [`Error::Backend`] from the device (allocation, copy).
    pub fn placed(&self, placement: &crate::device::Placement) -> Result<Self> {
        let Some((params, engine)) = self.params.for_placement(&self.device, placement)? else {
            return Ok(self.clone());
        };
        let mut layer = Self::from_store(self.cfg.clone(), params, placement.device(), &engine)?;
        layer.memory = self.memory.clone();
        Ok(layer)
    }

    /// The projections `q_proj`, `k_proj`, `v_proj`, `out_proj`.
    pub(crate) fn projections(&self) -> (&Linear, &Linear, &Linear, &Linear) {
        (&self.q_proj, &self.k_proj, &self.v_proj, &self.out_proj)
    }

    /// How this layer is computed.
    pub fn engine(&self) -> &Engine {
        &self.engine
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
    /// `mask` (rows at its offsets over `Tk` keys) -> `[B,Tq,H]`. Scale `1/sqrt(D)`.
    ///
    /// # Errors
    /// [`Error::Internal`] on inconsistent shapes; [`Error::Backend`].
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Mask,
        track: bool,
    ) -> Result<Tensor> {
        let d = q.dim(3)?;
        let o = self
            .engine
            .layer(track)
            .attention(q, k, v, mask, 1.0 / (d as f64).sqrt())?;
        self.out_proj.forward(&o, track)
    }

    /// Full layer `x: [B,T,H]` -> `[B,T,H]` at positions `0..T`, differentiable through the
    /// parameters (`track = true`). `rotary` must cover `T` positions when the config uses
    /// rotary (see [`GqaAttention::rotary`]).
    ///
    /// # Shapes
    /// - `x`: `[B, T, H]`; `mask`: [`Mask::padded`] over `T`; `rotary`: tables for `T` positions
    /// - inside: `q: [B, NH, T, D]`, `k, v: [B, NKV, T, D]` (query head `i` reads KV head
    ///   `i / (NH/NKV)`)
    /// - output: `[B, T, H]`
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when rotary is configured but not given; backend errors.
    pub fn forward(&self, x: &Tensor, mask: &Mask, rotary: Option<&Rotary>) -> Result<Tensor> {
        self.forward_t(x, mask, rotary, true)
    }

    /// [`GqaAttention::forward`] with a choice of graph tracking (`false` for inference).
    ///
    /// # Errors
    /// As [`GqaAttention::forward`].
    pub fn forward_t(
        &self,
        x: &Tensor,
        mask: &Mask,
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
        self.engine
            .layer(track)
            .self_attention(self, x, mask, rotary, None, track)
    }

    /// `h + attn(a)` (no dropout), the residual add folded into `out_proj` where the engine
    /// can. Used by [`crate::block::GqaBlock::forward`].
    ///
    /// # Errors
    /// As [`GqaAttention::forward_t`].
    pub(crate) fn forward_residual(
        &self,
        a: &Tensor,
        h: &Tensor,
        mask: &Mask,
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
        self.engine
            .layer(track)
            .self_attention(self, a, mask, rotary, Some(h), track)
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
        self.forward_f32_at(data, dims, lengths, 0)
    }

    /// [`GqaAttention::forward_f32`] with position `t` rotated as absolute position
    /// `position_offset + t` (`positionOffset`; the mask does not change).
    ///
    /// # Errors
    /// As [`GqaAttention::forward_f32`].
    pub fn forward_f32_at(
        &self,
        data: &[f32],
        dims: &[usize],
        lengths: Option<&[usize]>,
        position_offset: usize,
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
        let x = Tensor::from_vec(
            crate::memory::try_copy_f32("input", data)?,
            (b, t, h),
            &self.device,
        )?;
        let x = zero_padded(&x, lengths)?;
        let mask = Mask::padded(t, lengths).with_window(self.cfg.sliding_window);
        let rot = self
            .rope
            .as_ref()
            .map(|p| p.rotary_at(position_offset, t, &self.device))
            .transpose()?;
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
