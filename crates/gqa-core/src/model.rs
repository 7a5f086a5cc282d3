//! The GQA transformer model (SPEC section 2): optional input projection, `numLayers`
//! pre-norm blocks, final LayerNorm, output mode.

use candle_core::{DType, Device, Tensor};

use crate::attention::AttentionConfig;
use crate::block::GqaBlock;
use crate::compute::Engine;
use crate::config::{GqaConfig, OutputMode};
use crate::dropout::Dropout;
use crate::error::{check_f32_buffer, Error, Result};
use crate::input::{check_dims, check_lengths, has_padding, valid_mask, zero_padded};
use crate::mask::Mask;
use crate::nn::{LayerNorm, Linear};
use crate::params::ParamStore;
use crate::rope::{RopePlan, Rotary};

/// The model: parameters (canonical order, SPEC section 3) as candle `Var`s plus the layers
/// that read them.
#[derive(Debug, Clone)]
pub struct GqaModel {
    cfg: GqaConfig,
    params: ParamStore,
    device: Device,
    /// How the model is computed: chosen once, when it is built ([`crate::compute`]).
    engine: Engine,
    input_projection: Option<Linear>,
    blocks: Vec<GqaBlock>,
    final_norm: LayerNorm,
    rope: Option<RopePlan>,
    /// The parameters' bytes under the memory budget ([`crate::memory`]), shared by clones
    /// (which share the tensors) and released with the last of them.
    _memory: std::sync::Arc<crate::memory::Reservation>,
    /// Who uses the weights: calls that read them (forward, predict, evaluate, session push,
    /// attention maps) share it, a training step (which updates them in place) holds it alone.
    /// Taken *before* entering the compute pool and never inside it, so a pool worker never
    /// waits for a weight lock held by a thread that waits for the pool. Shared by clones.
    usage: std::sync::Arc<std::sync::RwLock<()>>,
}

impl GqaModel {
    /// Validates `cfg` and initialises every parameter from `cfg.seed` on the CPU
    /// (Glorot-uniform kernels, zero biases, LayerNorm 1/0; stream = canonical index).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] / [`Error::OutOfMemory`] from [`GqaConfig::validate`].
    pub fn new(cfg: GqaConfig) -> Result<Self> {
        Self::new_on(cfg, &Device::Cpu)
    }

    /// [`GqaModel::new`] on a given candle device.
    ///
    /// # Errors
    /// As [`GqaModel::new`]; [`Error::OutOfMemory`] (`parameters`) when the parameters do not
    /// fit under the memory budget next to what is in use ([`crate::memory`]), checked before
    /// anything is allocated; [`Error::Backend`] from the device.
    pub fn new_on(cfg: GqaConfig, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let memory = std::sync::Arc::new(crate::memory::reserve(
            "parameters",
            cfg.param_count_exact().saturating_mul(4),
        )?);
        let params = ParamStore::init(&crate::layout::model_layout(&cfg), cfg.seed, device)?;
        let engine = Engine::for_params(device, &params);
        Self::build(cfg, params, device, engine, memory, Default::default())
    }

    /// The layers over `params` (shared `Var`s), computed by `engine`.
    fn build(
        cfg: GqaConfig,
        params: ParamStore,
        device: &Device,
        engine: Engine,
        memory: std::sync::Arc<crate::memory::Reservation>,
        usage: std::sync::Arc<std::sync::RwLock<()>>,
    ) -> Result<Self> {
        let input_projection = if cfg.has_input_projection() {
            Some(Linear::from_store(&params, "input_projection")?.with_engine(&engine))
        } else {
            None
        };
        let acfg = AttentionConfig::from_model(&cfg);
        let blocks = (0..cfg.num_layers)
            .map(|l| GqaBlock::from_store(&acfg, &params, &format!("blocks.{l}."), device, &engine))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = LayerNorm::from_store(&params, "final_norm")?.with_engine(&engine);
        let rope = acfg.rope_plan();
        Ok(GqaModel {
            cfg,
            params,
            device: device.clone(),
            engine,
            input_projection,
            blocks,
            final_norm,
            rope,
            _memory: memory,
            usage,
        })
    }

    /// This model (the same weights, shared) computed by `engine`: e.g.
    /// `Engine::Reference(Device::Cpu)` to compare the two implementations.
    ///
    /// # Errors
    /// [`Error::MissingParameter`] (a bug).
    pub fn with_engine(&self, engine: Engine) -> Result<Self> {
        Self::build(
            self.cfg.clone(),
            self.params.clone(),
            &self.device,
            engine,
            self._memory.clone(),
            self.usage.clone(),
        )
    }

    /// This model on `placement` ([`crate::device`]): itself (shared weights) on the CPU in
    /// f32, else a copy of its weights on that device in that dtype, computed by the engine
    /// [`Engine::for_params`] chooses there.
    ///
    /// # Errors
    /// [`Error::Backend`] from the device (allocation, copy).
    pub fn placed(&self, placement: &crate::device::Placement) -> Result<Self> {
        match self.params.for_placement(&self.device, placement)? {
            None => Ok(self.clone()),
            Some((params, engine)) => Self::build(
                self.cfg.clone(),
                params,
                placement.device(),
                engine,
                self._memory.clone(),
                Default::default(),
            ),
        }
    }

    /// How this model is computed.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The options.
    pub fn config(&self) -> &GqaConfig {
        &self.cfg
    }

    /// The parameters in canonical order.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The blocks (for inspection and the KV-cache session).
    pub fn blocks(&self) -> &[GqaBlock] {
        &self.blocks
    }

    /// FNV-1a (64-bit) over the f32 bits (little-endian bytes) of every parameter in canonical
    /// order; equal digests across builds (native, wasm) mean bitwise-equal weights.
    ///
    /// # Errors
    /// [`Error::Backend`] from candle.
    pub fn weights_digest(&self) -> Result<u64> {
        self.params.digest()
    }

    /// A KV-cache streaming session for `batch` sequences of up to `max_len` positions each
    /// (SPEC section 4); see [`crate::session::Session::new`].
    ///
    /// # Errors
    /// As [`crate::session::Session::new`].
    pub fn session(&self, batch: usize, max_len: usize) -> Result<crate::session::Session> {
        crate::session::Session::new(self, batch, max_len)
    }

    /// A KV-cache session without a length limit for a sliding-window model
    /// ([`crate::session::Session::streaming`]); with `max_len`, [`GqaModel::session`].
    ///
    /// # Errors
    /// As [`crate::session::Session::streaming`] / [`crate::session::Session::new`].
    pub fn session_opt(
        &self,
        batch: usize,
        max_len: Option<usize>,
    ) -> Result<crate::session::Session> {
        match max_len {
            Some(l) => crate::session::Session::new(self, batch, l),
            None => crate::session::Session::streaming(self, batch),
        }
    }

    /// The attention mask of a full pass over `t` positions with optional per-sequence lengths:
    /// causal, padded ([`Mask::padded`]) and windowed by `slidingWindow`.
    pub fn mask(&self, t: usize, lengths: Option<&[usize]>) -> Mask {
        Mask::padded(t, lengths).with_window(self.cfg.sliding_window)
    }

    /// Rotary tables for positions `0..positions` of a sequence of `positions` positions (the
    /// length a `dynamic` ropeScaling sees), or `None` when the config has no rotary.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] / [`Error::Backend`].
    pub fn rotary(&self, positions: usize) -> Result<Option<Rotary>> {
        self.rope
            .as_ref()
            .map(|p| p.rotary(positions, positions, &self.device))
            .transpose()
    }

    /// Rotary tables for the `t` positions `first..first + t` (row `i` = position `first + i`;
    /// a `dynamic` ropeScaling sees the sequence length `first + t`), or `None` without rotary.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] / [`Error::Backend`].
    pub fn rotary_at(&self, first: usize, t: usize) -> Result<Option<Rotary>> {
        self.rope
            .as_ref()
            .map(|p| p.rotary_at(first, t, &self.device))
            .transpose()
    }

    /// How this model's rotary tables are made (`None` without rotary).
    pub fn rope_plan(&self) -> Option<&RopePlan> {
        self.rope.as_ref()
    }

    /// Forward pass `x: [B,T,E]` (f32) -> `[B,H]` (`last_timestep`, `mean_pool`) or `[B,T,H]`
    /// (`all`), per SPEC section 2, differentiable through the parameters (candle autograd).
    ///
    /// `lengths`: optional per-sequence lengths (`B` values in `1..=T`); padded input positions
    /// may hold anything (NaN included). `dropout`: `Some` in training (applied after attention
    /// and after the FFN, before each residual add); `None` = inference. Edifice's extra
    /// between-block dropout (rate passed explicitly, 0 by default) is not applied.
    ///
    /// # Shapes
    /// - `x`: `[B, T, E]` f32; `lengths`: `B` values in `1..=T`
    /// - output: `[B, H]` (`last_timestep`, `mean_pool`) or `[B, T, H]` (`all`)
    ///
    /// Dimensions: `B` batch, `T` positions, `E` embedDim, `H` hiddenSize, `NH` query heads,
    /// `NKV` KV heads, `D` headDim.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a rank other than 3, a wrong `E`, `T = 0` (names `dims`) or
    /// bad lengths; [`Error::OutOfMemory`] when the score buffer `[B,NH,T,T]` is too large.
    pub fn forward_t(
        &self,
        x: &Tensor,
        lengths: Option<&[usize]>,
        dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        self.forward_impl(x, lengths, dropout, true)
    }

    /// Inference forward (no dropout, no autograd graph). Same shapes and errors as
    /// [`GqaModel::forward_t`].
    ///
    /// # Errors
    /// As [`GqaModel::forward_t`].
    pub fn forward(&self, x: &Tensor, lengths: Option<&[usize]>) -> Result<Tensor> {
        self.forward_impl(x, lengths, None, false)
    }

    fn forward_impl(
        &self,
        x: &Tensor,
        lengths: Option<&[usize]>,
        dropout: Option<&mut Dropout>,
        track: bool,
    ) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        if dims.len() != 3 {
            return Err(Error::input(
                "dims",
                "3 dims [batch, seq, embedDim]",
                format!("{} dims {:?}", dims.len(), dims),
            ));
        }
        let (b, t, e) = (dims[0], dims[1], dims[2]);
        let h_dim = self.cfg.hidden_size;
        if e != self.cfg.embed_dim {
            return Err(Error::input(
                "dims",
                format!("dims[2] = embedDim = {}", self.cfg.embed_dim),
                format!("{e} (dims {dims:?})"),
            ));
        }
        if t == 0 && b > 0 {
            return Err(Error::input(
                "dims",
                "a sequence length dims[1] >= 1",
                format!("0 (dims {dims:?})"),
            ));
        }
        check_lengths(b, t, lengths)?;
        if b == 0 {
            let shape = if self.cfg.output_mode == OutputMode::All {
                vec![0, t, h_dim]
            } else {
                vec![0, h_dim]
            };
            return Ok(Tensor::zeros(shape, DType::F32, &self.device)?);
        }
        check_f32_buffer("ffn activations", &[b, t, 4 * h_dim])?;
        let graph = track || dropout.is_some();
        let _working =
            self.reserve_forward_path(b, t, self.engine.materialises_scores(graph), track)?;
        let x = if x.dtype() == DType::F32 {
            x.clone()
        } else {
            x.to_dtype(DType::F32)?
        };
        let lengths = if has_padding(t, lengths) {
            lengths
        } else {
            None
        };
        self.engine
            .forward(self, &x, (&self.mask(t, lengths), 0), dropout, track)
    }

    /// The forward on the layers' candle ops (the reference implementation's forward, and any
    /// forward that builds a graph): `x: [B,T,E]` f32 under `mask` ([`Mask::padded`]), position
    /// `t` at absolute position `first + t`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] for the score buffer; backend errors.
    pub(crate) fn forward_layers(
        &self,
        x: &Tensor,
        (mask, first): (&Mask, usize),
        mut dropout: Option<&mut Dropout>,
        track: bool,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        check_f32_buffer("attention scores", &[b, self.cfg.num_heads, t, t])?;
        let ls: Vec<usize> = (0..b).map(|i| mask.key_len(i)).collect();
        let lengths = has_padding(t, Some(&ls)).then_some(ls.as_slice());
        let x = zero_padded(x, lengths)?;
        let mut h = self.project_input(&x, track)?;
        let rot = self.rotary_at(first, t)?;
        for block in &self.blocks {
            h = block.forward(&h, mask, rot.as_ref(), dropout.as_deref_mut(), track)?;
        }
        let h = self.final_norm.forward(&h, track)?;
        self.output(&h, lengths)
    }

    /// Step 1 of SPEC section 2: `x: [B,T,E]` -> `h: [B,T,H]` through `input_projection`
    /// when `E != H`, else `x` itself. (Padded positions must already be finite.)
    ///
    /// # Errors
    /// Backend errors (wrong `E`).
    pub fn project_input(&self, x: &Tensor, track: bool) -> Result<Tensor> {
        match &self.input_projection {
            Some(p) => p.forward(x, track),
            None => Ok(x.clone()),
        }
    }

    /// Step 3 of SPEC section 2: `final_norm` LayerNorm on `h: [..., H]`.
    ///
    /// # Errors
    /// Backend errors.
    pub fn final_norm(&self, h: &Tensor, track: bool) -> Result<Tensor> {
        self.final_norm.forward(h, track)
    }

    /// Applies the output mode to final hidden states `h: [B,T,H]`.
    fn output(&self, h: &Tensor, lengths: Option<&[usize]>) -> Result<Tensor> {
        let (b, t, hd) = h.dims3()?;
        Ok(match (self.cfg.output_mode, lengths) {
            (OutputMode::All, None) => h.clone(),
            (OutputMode::All, Some(ls)) => h.broadcast_mul(&valid_mask(b, t, ls, &self.device)?)?,
            (OutputMode::LastTimestep, None) => h.narrow(1, t - 1, 1)?.squeeze(1)?,
            (OutputMode::LastTimestep, Some(ls)) => {
                let ids: Vec<u32> = ls
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i * t + l - 1) as u32)
                    .collect();
                let ids = Tensor::from_vec(ids, b, &self.device)?;
                h.reshape((b * t, hd))?.index_select(&ids, 0)?
            }
            (OutputMode::MeanPool, None) => h.mean(1)?,
            (OutputMode::MeanPool, Some(ls)) => {
                let mut w = Vec::with_capacity(b * t);
                for &l in ls {
                    for p in 0..t {
                        w.push(if p < l { 1.0 / l as f32 } else { 0.0 });
                    }
                }
                let w = Tensor::from_vec(w, (b, 1, t), &self.device)?;
                w.matmul(h)?.squeeze(1)?
            }
        })
    }

    /// Shared use of the weights for one call (see the `usage` field); take it outside the
    /// compute pool.
    pub(crate) fn read_use(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.usage
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sole use of the weights for a training step that updates them in place; take it outside
    /// the compute pool.
    pub(crate) fn write_use(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.usage
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The sizes of a call on `b` sequences of `t` positions attending to `keys` positions
    /// ([`crate::memory::WorkDims`]), `outputs` head outputs.
    pub(crate) fn work_dims(
        &self,
        b: usize,
        t: usize,
        keys: usize,
        outputs: usize,
    ) -> crate::memory::WorkDims {
        let cfg = &self.cfg;
        crate::memory::WorkDims {
            batch: b,
            seq: t,
            embed: cfg.embed_dim,
            hidden: cfg.hidden_size,
            heads: cfg.num_heads,
            kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim(),
            layers: cfg.num_layers,
            outputs,
            keys,
        }
    }

    /// Reserves a forward pass's working memory for its duration ([`crate::memory`]), from the
    /// buffers of the path it takes ([`crate::memory::working_set`]): the fused engine
    /// (`scores = false`) or candle ops (`scores = true`, score matrices materialised; with
    /// `track`, every block's intermediates kept for autograd).
    fn reserve_forward(
        &self,
        b: usize,
        t: usize,
        scores: bool,
    ) -> Result<crate::memory::Reservation> {
        self.reserve_forward_path(b, t, scores, false)
    }

    fn reserve_forward_path(
        &self,
        b: usize,
        t: usize,
        scores: bool,
        track: bool,
    ) -> Result<crate::memory::Reservation> {
        let path = self.engine.work_path(scores, track);
        crate::memory::reserve_work("forward activations", self.work_dims(b, t, t, 0), path)
    }

    /// Entry point of the bindings: `data` = `x: [B,T,E]` row-major f32, `dims = [B,T,E]`,
    /// optional lengths. Returns `(values, dims)` with dims `[B,H]` or `[B,T,H]` (`all`).
    /// `B = 0` returns no values and dims `[0,H]` (`[0,T,H]` for `all`).
    ///
    /// # Shapes
    /// - `data`: `B*T*E` f32 values of `[B, T, E]`, `dims = [B, T, E]`; `lengths`: `B` values
    /// - returns: values of `[B, H]` (or `[B, T, H]` for `all`) and those dims
    ///
    /// # Errors
    /// [`Error::InvalidInput`]: `dims` not of length 3, `dims[2] != embedDim`, `T = 0`
    /// (names `dims`), `data.len() != B*T*E` (names `input`), lengths count or values outside
    /// `1..=T` (names `lengths[i]`); [`Error::OutOfMemory`] for buffers over the limit.
    pub fn forward_f32(
        &self,
        data: &[f32],
        dims: &[usize],
        lengths: Option<&[usize]>,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        self.forward_f32_at(data, dims, lengths, 0)
    }

    /// [`GqaModel::forward_f32`] with the sequence starting at absolute position
    /// `position_offset` (`positionOffset`): position `t` is rotated as position
    /// `position_offset + t`, so the output equals what a session gives for the same positions
    /// after `position_offset` earlier ones once they are outside every receptive field (a
    /// sliding window). The mask is the same (relative positions do not change).
    ///
    /// # Errors
    /// As [`GqaModel::forward_f32`].
    pub fn forward_f32_at(
        &self,
        data: &[f32],
        dims: &[usize],
        lengths: Option<&[usize]>,
        position_offset: usize,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        crate::testing::panic_point("forward");
        let _use = self.read_use();
        self.forward_f32_in_use(data, dims, lengths, position_offset)
    }

    /// [`GqaModel::forward_f32_at`] for a caller that holds [`GqaModel::read_use`].
    pub(crate) fn forward_f32_in_use(
        &self,
        data: &[f32],
        dims: &[usize],
        lengths: Option<&[usize]>,
        position_offset: usize,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        let (b, t) = check_dims(data, dims, self.cfg.embed_dim, "embedDim", lengths)?;
        let h = self.cfg.hidden_size;
        let out_dims = if self.cfg.output_mode == OutputMode::All {
            vec![b, t, h]
        } else {
            vec![b, h]
        };
        if b == 0 {
            return Ok((Vec::new(), out_dims));
        }
        check_f32_buffer("ffn activations", &[b, t, 4 * h])?;
        let _working = self.reserve_forward(b, t, self.engine.materialises_scores(false))?;
        let lengths = if has_padding(t, lengths) {
            lengths
        } else {
            None
        };
        let x = Tensor::from_vec(
            crate::memory::try_copy_f32("input", data)?,
            (b, t, self.cfg.embed_dim),
            &self.device,
        )?;
        let y = self.engine.forward(
            self,
            &x,
            (&self.mask(t, lengths), position_offset),
            None,
            false,
        )?;
        Ok((y.flatten_all()?.to_vec1::<f32>()?, out_dims))
    }
}
