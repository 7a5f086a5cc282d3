//! safetensors loading and saving (SPEC section 3).
//!
//! Loading detects the naming scheme (canonical PyTorch names or Edifice/Axon names, whose
//! kernels are `[in, out]` and get transposed) and a common key prefix (`model.`, `weight.`,
//! ...), accepts F32/F16/BF16 (converted to f32), checks every shape, rejects NaN/Inf, ignores
//! non-model tensors unless strict, and replaces the weights only when every check passed.
//! Saving writes canonical names, F32, and the options as metadata (`gqa_config`).

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Device, Tensor};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::attention::{AttentionConfig, GqaAttention};
use crate::config::GqaConfig;
use crate::error::{Error, Result};
use crate::model::GqaModel;
use crate::params::ParamStore;

/// Metadata key holding the model options (JSON, TypeScript names).
pub const CONFIG_METADATA_KEY: &str = "gqa_config";
/// Metadata key holding the options of a standalone attention layer.
pub const ATTENTION_CONFIG_METADATA_KEY: &str = "gqa_attention_config";

/// How to load a weight file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LoadOptions {
    /// Model options; needed for files without `gqa_config` metadata (PyTorch or Edifice
    /// exports). When given, it takes precedence over the file's metadata.
    pub config: Option<GqaConfig>,
    /// Reject tensors that are not model parameters ([`Error::UnexpectedParameter`]).
    pub strict: bool,
    /// Key prefix of every model tensor (e.g. `model.`); detected when `None`.
    pub prefix: Option<String>,
    /// Keys strict loading accepts besides the model's own (set by callers that read those
    /// tensors themselves, such as a task head's `head.weight`/`head.bias`).
    #[serde(skip)]
    pub allow_extra: Vec<String>,
}

impl LoadOptions {
    /// Parses load options JSON (`{config?, strict?, prefix?}`, TypeScript names; an empty string
    /// means the defaults), as both bindings receive them.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the field (`strict`, `config.numHeads`, ...), what it
    /// expects and what was found.
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_value(crate::config::json_text(json, "loadOptions")?)
    }

    /// [`LoadOptions::from_json`] of options given as a structured value (what the bindings pass;
    /// `Value::Null` = the defaults).
    ///
    /// # Errors
    /// As [`LoadOptions::from_json`].
    pub fn from_value(value: serde_json::Value) -> Result<Self> {
        crate::config::parse_value(value, "loadOptions", "", "one of config, strict, prefix")
    }
}

fn malformed(e: impl std::fmt::Display) -> Error {
    Error::MalformedFile {
        reason: e.to_string(),
    }
}

/// Parses the safetensors header (bad length, bad JSON, truncated data -> MalformedFile).
pub(crate) fn parse(bytes: &[u8]) -> Result<SafeTensors<'_>> {
    SafeTensors::deserialize(bytes).map_err(malformed)
}

/// The `__metadata__` string map of a safetensors file (empty when absent).
///
/// # Errors
/// [`Error::MalformedFile`] when the header cannot be read.
pub fn read_metadata(bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(malformed)?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

fn shape_str(s: &[usize]) -> String {
    format!("{s:?}")
}

/// Converts a float view (F32, F16, BF16) to f32 values.
fn view_f32(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::TensorMismatch {
                name: name.into(),
                field: "dtype".into(),
                expected: "F32, F16 or BF16".into(),
                found: format!("{other:?}"),
            })
        }
    })
}

/// `(name, tensor)` pairs.
pub type NamedTensors = Vec<(String, Tensor)>;

/// Every tensor of a file as candle tensors on the CPU, plus the metadata. F32/F16/BF16 become
/// F32, F64 stays F64, I64/U32/U8 keep their type, BOOL becomes U8.
///
/// # Errors
/// [`Error::MalformedFile`] for unreadable bytes; [`Error::TensorMismatch`] (`dtype`) for a
/// dtype candle cannot hold.
pub fn read_tensors(bytes: &[u8]) -> Result<(NamedTensors, HashMap<String, String>)> {
    let st = parse(bytes)?;
    let meta = read_metadata(bytes)?;
    let dev = Device::Cpu;
    let mut out = Vec::new();
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    for name in names {
        let v = st.tensor(name).map_err(malformed)?;
        let shape = v.shape().to_vec();
        let d = v.data();
        let t = match v.dtype() {
            Dtype::F32 | Dtype::F16 | Dtype::BF16 => {
                Tensor::from_vec(view_f32(name, v.dtype(), d)?, shape, &dev)?
            }
            Dtype::F64 => {
                let x: Vec<f64> = d
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect();
                Tensor::from_vec(x, shape, &dev)?
            }
            Dtype::I64 => {
                let x: Vec<i64> = d
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect();
                Tensor::from_vec(x, shape, &dev)?
            }
            Dtype::U32 => {
                let x: Vec<u32> = d
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect();
                Tensor::from_vec(x, shape, &dev)?
            }
            Dtype::U8 | Dtype::BOOL => Tensor::from_vec(d.to_vec(), shape, &dev)?,
            other => {
                return Err(Error::TensorMismatch {
                    name: name.into(),
                    field: "dtype".into(),
                    expected: "F32, F16, BF16, F64, I64, U32, U8 or BOOL".into(),
                    found: format!("{other:?}"),
                })
            }
        };
        out.push((name.to_string(), t));
    }
    Ok((out, meta))
}

pub use crate::layout::axon_name;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scheme {
    Canonical,
    Axon,
}

fn scheme_name(scheme: Scheme, canonical: &str) -> Option<String> {
    match scheme {
        Scheme::Canonical => Some(canonical.to_string()),
        Scheme::Axon => axon_name(canonical),
    }
}

/// Reads every parameter of `params` from the file into new tensors (checked), then sets them.
/// On any error nothing is changed.
pub(crate) fn load_into(
    params: &ParamStore,
    st: &SafeTensors<'_>,
    opts: &LoadOptions,
) -> Result<()> {
    let wanted: Vec<(&str, &[usize])> = params.iter().map(|(n, v)| (n, v.dims())).collect();
    let planned = plan(&wanted, st, opts)?;
    let mut loaded: Vec<Tensor> = Vec::with_capacity(planned.len());
    for ((_, var), p) in params.iter().zip(planned) {
        let view = st.tensor(&p.key).map_err(malformed)?;
        let vals = view_f32(&p.key, view.dtype(), view.data())?;
        if let Some((i, v)) = vals.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFiniteWeight {
                name: p.key,
                index: i,
                value: v.to_string(),
            });
        }
        let mut t = Tensor::from_vec(vals, p.file_shape, var.device())?;
        if p.transposed {
            t = t.t()?.contiguous()?;
        }
        loaded.push(t);
    }
    for ((_, var), t) in params.iter().zip(loaded) {
        var.set(&t)?;
    }
    Ok(())
}

/// Where one parameter lies in a file: its key, whether it is an Axon kernel stored `[in, out]`,
/// and its shape there.
struct Planned {
    key: String,
    transposed: bool,
    file_shape: Vec<usize>,
}

/// Checks a file against the parameters `wanted` (`(canonical name, shape)` in canonical order)
/// from its header alone, before anything is allocated or read: the naming scheme and prefix,
/// every parameter's presence, shape and dtype (F32, F16 or BF16), and under strict loading
/// the absence of other tensors. Tensors that are not parameters are ignored otherwise, whatever
/// their dtype (SPEC section 3).
///
/// # Errors
/// [`Error::MissingParameter`], [`Error::TensorMismatch`] (`shape`, `dtype`),
/// [`Error::UnexpectedParameter`] (strict only).
fn plan(
    wanted: &[(&str, &[usize])],
    st: &SafeTensors<'_>,
    opts: &LoadOptions,
) -> Result<Vec<Planned>> {
    let names: Vec<&str> = wanted.iter().map(|(n, _)| *n).collect();
    let keys: HashSet<&str> = st.names().into_iter().collect();
    let (scheme, pre) = choose_scheme(&names, &keys, opts.prefix.as_deref())?;
    let mut used: HashSet<String> = HashSet::new();
    let mut planned: Vec<Planned> = Vec::with_capacity(names.len());
    for &(name, dims) in wanted {
        let p = plan_one(st, scheme, &pre, name, dims)?;
        used.insert(p.key.clone());
        planned.push(p);
    }
    if opts.strict {
        refuse_extra(&keys, &used, &opts.allow_extra)?;
    }
    Ok(planned)
}

/// The naming scheme and key prefix under which the file holds the most of `names`
/// (canonical parameter names): among `prefix` alone when given, else among every prefix
/// under which some name occurs (shortest first; canonical before Axon, the first best wins).
///
/// # Errors
/// [`Error::MissingParameter`] (naming the first parameter) when no parameter is found under
/// any candidate.
fn choose_scheme(
    names: &[&str],
    keys: &HashSet<&str>,
    prefix: Option<&str>,
) -> Result<(Scheme, String)> {
    let count = |scheme: Scheme, pre: &str| {
        names
            .iter()
            .filter(|n| {
                scheme_name(scheme, n).is_some_and(|k| keys.contains(format!("{pre}{k}").as_str()))
            })
            .count()
    };
    let mut best: Option<(Scheme, String, usize)> = None;
    for scheme in [Scheme::Canonical, Scheme::Axon] {
        for p in candidate_prefixes(scheme, names, keys, prefix) {
            let c = count(scheme, &p);
            if best.as_ref().is_none_or(|b| c > b.2) {
                best = Some((scheme, p, c));
            }
        }
    }
    match best {
        Some((s, p, c)) if c > 0 => Ok((s, p)),
        _ => {
            let first = names.first().copied().unwrap_or("");
            let pre = prefix.unwrap_or("");
            Err(Error::MissingParameter {
                name: first.to_string(),
                looked_for: format!(
                    "`{pre}{first}` or `{pre}{}` (no model parameter found under canonical or Axon names{})",
                    axon_name(first).unwrap_or_default(),
                    if prefix.is_some() { " with the given prefix" } else { " with any prefix" }
                ),
            })
        }
    }
}

/// Candidate key prefixes for `scheme`: the given `prefix`, or every distinct prefix `p` such
/// that some key is `p` + the scheme's name of a parameter, sorted by length.
fn candidate_prefixes(
    scheme: Scheme,
    names: &[&str],
    keys: &HashSet<&str>,
    prefix: Option<&str>,
) -> Vec<String> {
    let mut prefixes: Vec<String> = Vec::new();
    match prefix {
        Some(p) => prefixes.push(p.to_string()),
        None => {
            for n in names {
                let Some(k) = scheme_name(scheme, n) else {
                    continue;
                };
                for key in keys {
                    if let Some(p) = key.strip_suffix(k.as_str()) {
                        if !prefixes.iter().any(|q| q == p) {
                            prefixes.push(p.to_string());
                        }
                    }
                }
            }
            prefixes.sort_by_key(|p| p.len());
        }
    }
    prefixes
}

/// Where parameter `name` of shape `dims` lies in the file under `scheme` and prefix `pre`:
/// its key, and (Axon kernels, 2-D) whether it is stored transposed `[in, out]`.
///
/// # Errors
/// [`Error::MissingParameter`] (naming the key), [`Error::TensorMismatch`] for a shape other
/// than the expected one (in the file's layout) or a dtype other than F32, F16 or BF16.
fn plan_one(
    st: &SafeTensors<'_>,
    scheme: Scheme,
    pre: &str,
    name: &str,
    dims: &[usize],
) -> Result<Planned> {
    let key = format!(
        "{pre}{}",
        scheme_name(scheme, name).unwrap_or_else(|| name.to_string())
    );
    let view = st.tensor(&key).map_err(|_| Error::MissingParameter {
        name: name.to_string(),
        looked_for: format!("`{key}`"),
    })?;
    let want: Vec<usize> = dims.to_vec();
    let transposed = scheme == Scheme::Axon && want.len() == 2;
    let want_file: Vec<usize> = if transposed {
        vec![want[1], want[0]]
    } else {
        want.clone()
    };
    if view.shape() != want_file.as_slice() {
        return Err(Error::TensorMismatch {
            name: key,
            field: "shape".into(),
            expected: shape_str(&want_file),
            found: shape_str(view.shape()),
        });
    }
    if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        return Err(Error::TensorMismatch {
            name: key,
            field: "dtype".into(),
            expected: "F32, F16 or BF16".into(),
            found: format!("{:?}", view.dtype()),
        });
    }
    Ok(Planned {
        key,
        transposed,
        file_shape: want_file,
    })
}

/// Strict loading: refuses the first key (in sorted order) of `keys` that is neither `used`
/// nor in `allow_extra`.
///
/// # Errors
/// [`Error::UnexpectedParameter`] naming that key.
fn refuse_extra(
    keys: &HashSet<&str>,
    used: &HashSet<String>,
    allow_extra: &[String],
) -> Result<()> {
    refuse_first(
        keys.iter()
            .copied()
            .filter(|k| !used.contains(*k) && !allow_extra.iter().any(|a| a == k)),
    )
}

/// The first of `extra` in sorted order, as [`Error::UnexpectedParameter`]; `Ok` when empty.
fn refuse_first<'a>(extra: impl Iterator<Item = &'a str>) -> Result<()> {
    match extra.min() {
        Some(k) => Err(Error::UnexpectedParameter {
            name: k.to_string(),
        }),
        None => Ok(()),
    }
}

/// Serialises `params` (canonical names, F32) plus extra tensors and metadata.
pub(crate) fn save(
    params: &ParamStore,
    extra_tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut items: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut seen = HashSet::new();
    let all = params
        .tensors()?
        .into_iter()
        .chain(extra_tensors.iter().cloned());
    for (name, t) in all {
        if !seen.insert(name.clone()) {
            return Err(Error::input(
                "extra_tensors",
                "names distinct from each other and from the model parameters",
                name,
            ));
        }
        let t = t.flatten_all()?;
        let (dtype, bytes): (Dtype, Vec<u8>) = match t.dtype() {
            DType::I64 => (
                Dtype::I64,
                t.to_vec1::<i64>()?
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
            DType::U32 => (
                Dtype::U32,
                t.to_vec1::<u32>()?
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
            DType::U8 => (Dtype::U8, t.to_vec1::<u8>()?),
            _ => (
                Dtype::F32,
                t.to_dtype(DType::F32)?
                    .to_vec1::<f32>()?
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
        };
        items.push((name, dtype, Vec::new(), bytes));
    }
    // Shapes (flatten_all lost them): take them again.
    let shapes: Vec<Vec<usize>> = params
        .iter()
        .map(|(_, v)| v.dims().to_vec())
        .chain(extra_tensors.iter().map(|(_, t)| t.dims().to_vec()))
        .collect();
    for (item, s) in items.iter_mut().zip(shapes) {
        item.2 = s;
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = items
        .iter()
        .map(|(n, d, s, b)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Internal(format!("safetensors serialisation failed: {e}")))
}

/// [`plan`] of a model's parameter table for `cfg` (validated first), from the file's header
/// alone: nothing is allocated for the parameters.
///
/// # Errors
/// As [`GqaConfig::validate`] and [`plan`].
pub(crate) fn check_file(cfg: &GqaConfig, st: &SafeTensors<'_>, opts: &LoadOptions) -> Result<()> {
    cfg.validate()?;
    let layout = crate::layout::model_layout(cfg);
    let wanted: Vec<(&str, &[usize])> = layout
        .iter()
        .map(|r| (r.name.as_str(), r.shape.as_slice()))
        .collect();
    plan(&wanted, st, opts).map(|_| ())
}

/// One tensor of a file as an f32 tensor on the CPU (F32, F16 or BF16), read from its view.
///
/// # Errors
/// [`Error::TensorMismatch`] (`dtype`) for another dtype; [`Error::MalformedFile`].
pub(crate) fn read_f32_tensor(st: &SafeTensors<'_>, key: &str) -> Result<Tensor> {
    let view = st.tensor(key).map_err(malformed)?;
    let vals = view_f32(key, view.dtype(), view.data())?;
    Ok(Tensor::from_vec(vals, view.shape().to_vec(), &Device::Cpu)?)
}

impl GqaModel {
    /// Builds a model from a safetensors file: options from `opts.config`, else from the
    /// file's `gqa_config` metadata; then [`GqaModel::load_weights`].
    ///
    /// # Errors
    /// [`Error::MalformedFile`] (unreadable bytes), [`Error::MissingConfig`] (no options in
    /// the file or the call), [`Error::InvalidOption`] (bad options), and every error of
    /// [`GqaModel::load_weights`].
    pub fn from_safetensors(bytes: &[u8], opts: &LoadOptions) -> Result<Self> {
        let st = parse(bytes)?;
        let cfg = Self::config_of(bytes, opts)?;
        // Validate the file against the options' table before any parameter is allocated: a
        // small file whose options claim a huge model fails here, not after building it.
        check_file(&cfg, &st, opts)?;
        let model = GqaModel::new(cfg)?;
        load_into(model.params(), &st, opts)?;
        Ok(model)
    }

    /// The options a file is loaded with: `opts.config`, else the file's `gqa_config` metadata.
    ///
    /// # Errors
    /// As [`GqaModel::from_safetensors`].
    pub(crate) fn config_of(bytes: &[u8], opts: &LoadOptions) -> Result<GqaConfig> {
        let cfg = match &opts.config {
            Some(c) => c.clone(),
            None => {
                let meta = read_metadata(bytes)?;
                match meta.get(CONFIG_METADATA_KEY) {
                    Some(json) => GqaConfig::from_json(json)?,
                    None => {
                        return Err(Error::MissingConfig {
                            reason: format!(
                                "the file has no `{CONFIG_METADATA_KEY}` metadata (a PyTorch or Edifice export?) and no config was passed; \
                                 numHeads cannot be inferred from shapes: pass the options (GQA.load(bytes, {{config: {{...}}}}) / LoadOptions.config)"
                            ),
                        })
                    }
                }
            }
        };
        Ok(cfg)
    }

    /// Replaces this model's weights with those in the file (canonical or Axon names, any
    /// common prefix); `opts.config` is ignored. Nothing changes when an error is returned.
    ///
    /// # Errors
    /// [`Error::MalformedFile`], [`Error::MissingParameter`] (names the parameter and the key
    /// looked for), [`Error::TensorMismatch`] (names the tensor, expected and found shape or
    /// dtype), [`Error::NonFiniteWeight`], [`Error::UnexpectedParameter`] (strict only).
    pub fn load_weights(&mut self, bytes: &[u8], opts: &LoadOptions) -> Result<()> {
        let st = parse(bytes)?;
        load_into(self.params(), &st, opts)
    }

    /// The model as safetensors bytes: canonical names, F32, metadata `gqa_config`.
    ///
    /// # Errors
    /// [`Error::Internal`] if serialisation fails.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        self.to_safetensors_with(&[], &[])
    }

    /// [`GqaModel::to_safetensors`] plus extra tensors (e.g. `head.weight`; float tensors are
    /// written as F32, I64/U32/U8 as they are) and extra metadata entries (e.g. `gqa_head`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when an extra tensor reuses a name; [`Error::Internal`].
    pub fn to_safetensors_with(
        &self,
        extra_tensors: &[(String, Tensor)],
        extra_metadata: &[(String, String)],
    ) -> Result<Vec<u8>> {
        let mut meta: HashMap<String, String> = extra_metadata.iter().cloned().collect();
        meta.insert(CONFIG_METADATA_KEY.into(), self.config().to_json());
        save(self.params(), extra_tensors, meta)
    }
}

impl GqaAttention {
    /// Builds a standalone attention layer from a file with names `q_proj.weight`, ...:
    /// options from `config`, else the file's `gqa_attention_config` metadata, else
    /// `opts.config` (its attention options).
    ///
    /// # Errors
    /// As [`GqaModel::from_safetensors`].
    pub fn from_safetensors(
        bytes: &[u8],
        config: Option<AttentionConfig>,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let st = parse(bytes)?;
        let cfg = match config {
            Some(c) => c,
            None => match read_metadata(bytes)?.get(ATTENTION_CONFIG_METADATA_KEY) {
                Some(json) => AttentionConfig::from_json(json)?,
                None => match &opts.config {
                    Some(c) => AttentionConfig::from_model(c),
                    None => {
                        return Err(Error::MissingConfig {
                            reason: format!("the file has no `{ATTENTION_CONFIG_METADATA_KEY}` metadata and no attention config was passed"),
                        })
                    }
                },
            },
        };
        let layer = GqaAttention::new(cfg)?;
        load_into(layer.params(), &st, opts)?;
        Ok(layer)
    }

    /// The layer as safetensors bytes: names `q_proj.weight`, ..., F32, metadata
    /// `gqa_attention_config`.
    ///
    /// # Errors
    /// [`Error::Internal`] if serialisation fails.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let meta = HashMap::from([(
            ATTENTION_CONFIG_METADATA_KEY.to_string(),
            self.config().to_json(),
        )]);
        save(self.params(), &[], meta)
    }
}

/// The options of loading a standalone attention layer, as the bindings pass them (JSON,
/// TypeScript names): `{config?, hfConfig?, layer?, strict?, prefix?}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct AttentionLoadJson {
    config: Option<serde_json::Value>,
    hf_config: Option<serde_json::Value>,
    layer: Option<usize>,
    strict: bool,
    prefix: Option<String>,
}

impl GqaAttention {
    /// Loads a standalone attention layer from safetensors bytes and the load options of the
    /// TypeScript API as a structured value (`{config?, hfConfig?, layer?, strict?, prefix?}`;
    /// the bindings pass the JS object through; `Value::Null` = no options): with `hfConfig` (a parsed Hugging Face `config.json`) and `layer`,
    /// [`GqaAttention::from_hf_safetensors`]; else [`GqaAttention::from_safetensors`] with
    /// `config` as attention options (or model options, whose attention options are taken).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a bad options object (naming the field: `layer` missing with
    /// `hfConfig`, `config` with `hfConfig`, ...), then the errors of the loader used.
    pub fn load_value(bytes: &[u8], options: serde_json::Value) -> Result<Self> {
        let o: AttentionLoadJson = crate::config::parse_value(
            options,
            "loadOptions",
            "",
            "one of config, hfConfig, layer, strict, prefix",
        )?;
        if let Some(hf) = &o.hf_config {
            if o.config.is_some() {
                return Err(Error::option(
                    "config",
                    "no config with hfConfig (the layer's options come from hfConfig)",
                    "both given",
                ));
            }
            let layer = o.layer.ok_or_else(|| {
                Error::option(
                    "layer",
                    "the decoder layer index (an integer >= 0) with hfConfig",
                    "nothing",
                )
            })?;
            return GqaAttention::from_hf_safetensors(
                bytes,
                &hf.to_string(),
                layer,
                o.prefix.as_deref(),
                o.strict,
            );
        }
        if o.layer.is_some() {
            return Err(Error::option(
                "layer",
                "only with hfConfig (a Hugging Face checkpoint)",
                "layer without hfConfig",
            ));
        }
        let cfg = match &o.config {
            None => None,
            Some(c) => {
                // Attention options, or the options of a whole model (its attention's).
                match AttentionConfig::from_value(c.clone()) {
                    Ok(a) => Some(a),
                    Err(e) => match c.get("embedDim") {
                        Some(_) => Some(AttentionConfig::from_model(&GqaConfig::from_value(
                            c.clone(),
                        )?)),
                        None => return Err(e),
                    },
                }
            }
        };
        let opts = LoadOptions {
            config: None,
            strict: o.strict,
            prefix: o.prefix,
            allow_extra: Vec::new(),
        };
        GqaAttention::from_safetensors(bytes, cfg, &opts)
    }

    /// Loads the self-attention of decoder layer `layer` of a Hugging Face Llama / Mistral /
    /// Qwen2-style checkpoint: options from [`AttentionConfig::from_hf_config_layer`] of `hf_config`
    /// (with that layer's sliding window)
    /// (the `config.json` text), weights `{prefix}layers.{layer}.self_attn.{q,k,v,o}_proj.weight`
    /// (`[out, in]`, F32/F16/BF16) and `.bias` when present (zeros when absent; required when
    /// `attention_bias` is true). `o_proj` becomes `out_proj`. The prefix (e.g. `model.`) is
    /// detected when `None`. `strict` rejects other tensors of that layer's `self_attn.` (the
    /// rest of the checkpoint is ignored). The layer's forward then equals transformers'
    /// attention module at positions `0..T-1` with a causal (and sliding-window) mask (SPEC
    /// sections 5 and 7; fixtures of
    /// `scripts/gen_rope_fixtures.py`).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] (`hfConfig.*`, `layer` beyond `num_hidden_layers`),
    /// [`Error::MalformedFile`], [`Error::MissingParameter`] (names the key looked for),
    /// [`Error::TensorMismatch`], [`Error::NonFiniteWeight`], [`Error::UnexpectedParameter`].
    pub fn from_hf_safetensors(
        bytes: &[u8],
        hf_config: &str,
        layer: usize,
        prefix: Option<&str>,
        strict: bool,
    ) -> Result<Self> {
        let bias_required = hf_layer_bias_required(hf_config, layer)?;
        let cfg = AttentionConfig::from_hf_config_layer(hf_config, layer)?;
        let st = parse(bytes)?;
        let keys: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        let stem = format!("layers.{layer}.self_attn.");
        let pre = match prefix {
            Some(p) => p.to_string(),
            None => hf_detect_prefix(&keys, &format!("{stem}q_proj.weight")),
        };
        let layer_obj = GqaAttention::new(cfg)?;
        let mut loaded: Vec<Tensor> = Vec::new();
        let mut used: HashSet<String> = HashSet::new();
        for (name, var) in layer_obj.params().iter() {
            let (module, param) = name.split_once('.').unwrap_or((name, ""));
            let hf_module = crate::layout::ATTENTION_MODULES
                .iter()
                .find(|m| m.attention_name() == Some(module))
                .and_then(|m| m.hf_name())
                .unwrap_or(module);
            let key = format!("{pre}{stem}{hf_module}.{param}");
            let want: Vec<usize> = var.dims().to_vec();
            let Ok(view) = st.tensor(&key) else {
                if param == "bias" && !bias_required {
                    loaded.push(Tensor::zeros(want.as_slice(), DType::F32, var.device())?);
                    continue;
                }
                return Err(Error::MissingParameter {
                    name: name.to_string(),
                    looked_for: format!(
                        "`{key}`{}",
                        if param == "bias" {
                            " (attention_bias is true)"
                        } else {
                            ""
                        }
                    ),
                });
            };
            loaded.push(read_hf_tensor(&key, &view, want, var.device())?);
            used.insert(key);
        }
        if strict {
            refuse_extra_in_scope(&keys, &format!("{pre}{stem}"), &used)?;
        }
        for ((_, var), t) in layer_obj.params().iter().zip(loaded) {
            var.set(&t)?;
        }
        Ok(layer_obj)
    }
}

/// Checks decoder layer `layer` against `num_hidden_layers` of the Hugging Face `config.json`
/// text `hf_config` (when it has one) and returns its `attention_bias` (true only when it is
/// the JSON `true`).
///
/// # Errors
/// [`Error::InvalidOption`] naming `hfConfig` for text that is not JSON, `layer` for an index
/// `>= num_hidden_layers`.
fn hf_layer_bias_required(hf_config: &str, layer: usize) -> Result<bool> {
    let hf: serde_json::Value = serde_json::from_str(hf_config)
        .map_err(|e| Error::option("hfConfig", "a JSON object", e))?;
    if let Some(n) = hf
        .get("num_hidden_layers")
        .and_then(serde_json::Value::as_u64)
    {
        if layer as u64 >= n {
            return Err(Error::option(
                "layer",
                format!("a decoder layer index < num_hidden_layers = {n}"),
                layer,
            ));
        }
    }
    Ok(hf
        .get("attention_bias")
        .and_then(serde_json::Value::as_bool)
        == Some(true))
}

/// The shortest prefix `p` with `p + probe` among `keys` (e.g. `model.` for
/// `model.layers.3.self_attn.q_proj.weight`); `""` when none.
fn hf_detect_prefix(keys: &[String], probe: &str) -> String {
    keys.iter()
        .filter_map(|k| k.strip_suffix(probe))
        .min_by_key(|p| p.len())
        .unwrap_or("")
        .to_string()
}

/// The tensor `key` of `view` as F32 of shape `want` (`[out, in]` or `[out]`) on `device`.
///
/// # Errors
/// [`Error::TensorMismatch`] for another shape or dtype, [`Error::NonFiniteWeight`] naming the
/// first non-finite value, [`Error::Backend`] creating the tensor.
fn read_hf_tensor(
    key: &str,
    view: &safetensors::tensor::TensorView<'_>,
    want: Vec<usize>,
    device: &Device,
) -> Result<Tensor> {
    if view.shape() != want.as_slice() {
        return Err(Error::TensorMismatch {
            name: key.to_string(),
            field: "shape".into(),
            expected: shape_str(&want),
            found: shape_str(view.shape()),
        });
    }
    let vals = view_f32(key, view.dtype(), view.data())?;
    if let Some((i, v)) = vals.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFiniteWeight {
            name: key.to_string(),
            index: i,
            value: v.to_string(),
        });
    }
    Ok(Tensor::from_vec(vals, want, device)?)
}

/// Strict loading of one layer: refuses the first key (in sorted order) under `scope` (e.g.
/// `model.layers.3.self_attn.`) that was not `used`.
///
/// # Errors
/// [`Error::UnexpectedParameter`] naming that key.
fn refuse_extra_in_scope(keys: &[String], scope: &str, used: &HashSet<String>) -> Result<()> {
    refuse_first(
        keys.iter()
            .filter(|k| k.starts_with(scope) && !used.contains(*k))
            .map(String::as_str),
    )
}
