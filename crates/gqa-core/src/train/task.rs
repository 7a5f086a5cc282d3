//! A model with an optional task head: what the bindings hold, train, save and load.

use candle_core::{Tensor, Var};

use crate::config::{GqaConfig, OutputMode};
use crate::dropout::Dropout;
use crate::error::{Error, Result};
use crate::model::GqaModel;
use crate::session::Session;
use crate::weights::{read_f32_tensor, LoadOptions};

use super::head::{Head, HeadConfig, HEAD_BIAS, HEAD_METADATA_KEY, HEAD_WEIGHT};

/// [`GqaModel`] plus an optional [`Head`] (classification or regression).
///
/// Saved as one safetensors file: the model's canonical tensors, `head.weight`, `head.bias`,
/// and the metadata keys `gqa_config` and `gqa_head`.
#[derive(Debug)]
pub struct TaskModel {
    /// The backbone.
    pub model: GqaModel,
    /// The head, if the model was built or loaded with one.
    pub head: Option<Head>,
}

impl TaskModel {
    /// A freshly initialised model (from `cfg.seed`) and head. The head's weights use the same
    /// seed on the stream after the model's last parameter, so they never repeat its values.
    ///
    /// # Errors
    /// Option errors of the model or the head; [`Error::InvalidOption`] naming `outputMode`
    /// when a head is asked for on `outputMode: "all"` (a head needs `[B, H]`).
    pub fn new(cfg: GqaConfig, head: Option<HeadConfig>) -> Result<Self> {
        let model = GqaModel::new(cfg)?;
        let head = match head {
            None => None,
            Some(h) => Some(Self::new_head(&model, h)?),
        };
        Ok(TaskModel { model, head })
    }

    fn new_head(model: &GqaModel, head: HeadConfig) -> Result<Head> {
        let cfg = model.config();
        if cfg.output_mode == OutputMode::All {
            return Err(Error::option(
                "outputMode",
                "\"last_timestep\" or \"mean_pool\" when a head is attached",
                "\"all\"",
            ));
        }
        let stream = model.params().len() as u64;
        Head::new(head, cfg.hidden_size, cfg.seed, stream, model.device())
    }

    /// Loads a model (and its head, when the file has `gqa_head` metadata) from safetensors bytes.
    ///
    /// # Errors
    /// Everything [`GqaModel::from_safetensors`] returns; [`Error::MissingParameter`] for
    /// `head.weight`/`head.bias` when the metadata names a head; [`Error::UnexpectedParameter`]
    /// under strict loading for head tensors without head metadata.
    pub fn from_safetensors(bytes: &[u8], opts: &LoadOptions) -> Result<Self> {
        let st = crate::weights::parse(bytes)?;
        let meta = crate::weights::read_metadata(bytes)?;
        // Model tensors are checked by the model loader; head tensors are ours, so strict
        // loading of the backbone must not see them. Only the head's own tensors are read here
        // (other tensors, of any dtype, are the model loader's to ignore or refuse).
        let head_cfg = match meta.get(HEAD_METADATA_KEY) {
            Some(json) => Some(HeadConfig::from_json(json)?),
            None => None,
        };
        let names = st.names();
        let find = |name: &str| {
            let prefixed = opts.prefix.as_deref().map(|p| format!("{p}{name}"));
            names
                .iter()
                .find(|k| **k == name || prefixed.as_deref() == Some(**k))
                .map(|k| k.to_string())
        };
        // The head's tensors, found and shape-checked from the header before anything (the
        // model included) is allocated.
        let head_keys = match &head_cfg {
            None => None,
            Some(h) => {
                let missing = |n: &str| Error::MissingParameter {
                    name: n.into(),
                    looked_for: format!("`{n}` (the file's gqa_head metadata names a head)"),
                };
                let w = find(HEAD_WEIGHT).ok_or_else(|| missing(HEAD_WEIGHT))?;
                let b = find(HEAD_BIAS).ok_or_else(|| missing(HEAD_BIAS))?;
                let hidden = GqaModel::config_of(bytes, opts)?.hidden_size;
                let k = h.out_dim();
                for (key, name, want) in
                    [(&w, HEAD_WEIGHT, vec![k, hidden]), (&b, HEAD_BIAS, vec![k])]
                {
                    let view = st.tensor(key).map_err(|e| Error::MalformedFile {
                        reason: e.to_string(),
                    })?;
                    if view.shape() != want.as_slice() {
                        return Err(Error::TensorMismatch {
                            name: name.into(),
                            field: "shape".into(),
                            expected: format!("{want:?}"),
                            found: format!("{:?}", view.shape()),
                        });
                    }
                }
                Some((w, b))
            }
        };
        let model = if head_cfg.is_some() {
            let mut o = opts.clone();
            for name in [HEAD_WEIGHT, HEAD_BIAS] {
                o.allow_extra.push(name.to_string());
                if let Some(p) = &opts.prefix {
                    o.allow_extra.push(format!("{p}{name}"));
                }
            }
            GqaModel::from_safetensors(bytes, &o)?
        } else {
            GqaModel::from_safetensors(bytes, opts)?
        };
        let head = match (head_cfg, head_keys) {
            (Some(h), Some((wk, bk))) => {
                let w = read_f32_tensor(&st, &wk)?;
                let b = read_f32_tensor(&st, &bk)?;
                Some(Head::from_tensors(h, model.config().hidden_size, &w, &b)?)
            }
            _ => None,
        };
        Ok(TaskModel { model, head })
    }

    /// The model and head as safetensors bytes (canonical names, F32, config metadata).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        match &self.head {
            None => self.model.to_safetensors(),
            Some(h) => {
                let extra: Vec<(String, Tensor)> = h
                    .vars()
                    .into_iter()
                    .map(|(n, v)| (n, v.as_tensor().clone()))
                    .collect();
                self.model.to_safetensors_with(
                    &extra,
                    &[(HEAD_METADATA_KEY.to_string(), h.cfg.to_json())],
                )
            }
        }
    }

    /// This model and head on `placement` ([`crate::device`]): the same weights (shared) on the CPU
    /// in f32, else copies on that device (the backbone in the placement's dtype, the head in f32).
    ///
    /// # Errors
    /// [`Error::Backend`] from the device (allocation, copy).
    pub fn placed(&self, placement: &crate::device::Placement) -> Result<Self> {
        let model = self.model.placed(placement)?;
        let head = match &self.head {
            None => None,
            Some(h) => Some(h.placed(placement.device())?),
        };
        Ok(TaskModel { model, head })
    }

    /// Exact number of parameters (f32 values): the backbone's and the head's.
    pub fn param_count(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Every trainable variable: the model's in canonical order, then `head.weight`, `head.bias`.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut v: Vec<(String, Var)> = self
            .model
            .params()
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        if let Some(h) = &self.head {
            v.extend(h.vars());
        }
        v
    }

    /// The head, or an error naming what needs one.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming `head` when the model has none.
    pub fn head(&self, what: &str) -> Result<&Head> {
        self.head.as_ref().ok_or_else(|| {
            Error::option(
                "head",
                format!("a task head for {what} (build with a head option)"),
                "no head",
            )
        })
    }

    /// Head outputs (logits or regression values), optionally in train mode with dropout.
    ///
    /// # Shapes
    /// `x: [B, T, E]`, `lengths: [B]` -> `[B, K]`.
    pub fn head_forward(
        &self,
        x: &Tensor,
        lengths: Option<&[usize]>,
        dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let head = self.head("a head forward")?;
        let h = self.model.forward_t(x, lengths, dropout)?;
        head.forward(&h)
    }

    /// Predictions for a flat input: class probabilities (softmax of the logits) for a
    /// classification head, values for a regression head.
    ///
    /// # Shapes
    /// `data: [B*T*E]` with `dims = [B, T, E]` -> data of `[B, K]`.
    ///
    /// # Errors
    /// Input errors of [`GqaModel::forward_f32`]; no head.
    pub fn predict_f32(
        &self,
        data: &[f32],
        dims: &[usize],
        lengths: Option<&[usize]>,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        let head = self.head("predict")?;
        let _use = self.model.read_use(); // the head is updated by training steps too
        let (h, hdims) = self.model.forward_f32_in_use(data, dims, lengths, 0)?;
        predict_hidden(head, self.model.device(), h, &hdims)
    }

    /// Predictions after pushing a chunk into a KV-cache `session` of this model's backbone
    /// ([`Session::push`]): the head on each row's output after the push (class probabilities
    /// for classification, values for regression), what [`TaskModel::predict_f32`] gives for
    /// the whole prefix of each row.
    ///
    /// # Shapes
    /// `data: [B*t*E]` with `dims = [B, t, E]` -> data of `[B, K]`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming `head` (no head) or `outputMode` (`all`: a head reads
    /// `[B, H]`), checked before the session changes; the errors of [`Session::push`].
    pub fn push_predict_f32(
        &self,
        session: &mut Session,
        data: &[f32],
        dims: &[usize],
        lengths: Option<&[usize]>,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        let head = self.head("a session prediction")?;
        if self.model.config().output_mode == OutputMode::All {
            return Err(Error::option(
                "outputMode",
                "last_timestep or mean_pool (a head reads one [B, H] row per sequence)",
                "all",
            ));
        }
        let (h, hdims) = session.push(&self.model, data, dims, lengths, false)?;
        let _use = self.model.read_use(); // the head is updated by training steps too
        predict_hidden(head, self.model.device(), h, &hdims)
    }
}

/// The head on backbone outputs `h: [B, H]` (`hdims`): class probabilities (softmax of the
/// logits) or regression values, `[B, K]`.
fn predict_hidden(
    head: &Head,
    device: &candle_core::Device,
    h: Vec<f32>,
    hdims: &[usize],
) -> Result<(Vec<f32>, Vec<usize>)> {
    let b = hdims[0];
    let k = head.cfg.out_dim();
    if b == 0 {
        return Ok((Vec::new(), vec![0, k]));
    }
    let h = Tensor::from_vec(h, (b, hdims[1]), device)?;
    let mut y = head.forward(&h)?;
    if matches!(head.cfg, HeadConfig::Classification { .. }) {
        y = super::loss::log_softmax(&y)?.exp()?;
    }
    Ok((y.flatten_all()?.to_vec1()?, vec![b, k]))
}
