//! Attention options from a Hugging Face Llama / Mistral / Qwen2-style `config.json`
//! ([`AttentionConfig::from_hf_config`]).

use serde_json::{Map, Value};

use crate::attention::AttentionConfig;
use crate::error::{Error, Result};
use crate::rope::RopeScaling;

type Obj = Map<String, Value>;

impl AttentionConfig {
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
    /// [`AttentionConfig::validate`]. The window (`sliding_window`) depends on the layer: it is
    /// read by [`AttentionConfig::from_hf_config_layer`], not here.
    pub fn from_hf_config(json: &str) -> Result<Self> {
        let v = config_object(json)?;
        let o = v.as_object().expect("checked by config_object");
        let uint = |k: &str| hf_uint(k, get(o, k));
        let req = |k: &str| -> Result<usize> {
            uint(k)?.ok_or_else(|| {
                Error::option(&format!("hfConfig.{k}"), "a value (required)", "nothing")
            })
        };
        let hidden = req("hidden_size")?;
        let heads = req("num_attention_heads")?;
        let kv_heads = uint("num_key_value_heads")?.unwrap_or(heads);
        let head_dim = uint("head_dim")?;
        let rope = RopeDict::new(o)?;
        let theta = rope.theta()?;
        rope.check_partial()?;
        let scaling = rope.scaling()?;
        let cfg = AttentionConfig {
            hidden_size: hidden,
            head_dim: Some(head_dim.unwrap_or(hidden.checked_div(heads).unwrap_or(0))),
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

    /// [`AttentionConfig::from_hf_config`] for decoder layer `layer`, with its sliding window
    /// as transformers assigns it: `sliding_window` (absent or null: none), none at all when
    /// `use_sliding_window` is false (Qwen2), else on the layers whose `layer_types` entry is
    /// `"sliding_attention"`; without `layer_types`, with `use_sliding_window` true the layers
    /// `>= max_window_layers` (default 28, as `Qwen2Config` builds `layer_types`), else every
    /// layer (Mistral).
    ///
    /// # Errors
    /// As [`AttentionConfig::from_hf_config`]; [`Error::InvalidOption`] naming
    /// `hfConfig.sliding_window` (not an integer >= 1), `hfConfig.layer_types` (not an array
    /// of strings) or `hfConfig.max_window_layers`.
    pub fn from_hf_config_layer(json: &str, layer: usize) -> Result<Self> {
        let mut cfg = Self::from_hf_config(json)?;
        let v = config_object(json)?;
        let o = v.as_object().expect("checked by config_object");
        cfg.sliding_window = hf_layer_window(o, layer)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `config.json` text parsed as a JSON object.
///
/// # Errors
/// [`Error::InvalidOption`] naming `hfConfig` for text that is not JSON or not an object.
fn config_object(json: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| Error::option("hfConfig", "a JSON object (a parsed config.json)", e))?;
    if !v.is_object() {
        return Err(Error::option(
            "hfConfig",
            "a JSON object (a parsed config.json)",
            short(&v),
        ));
    }
    Ok(v)
}

/// The sliding window of decoder layer `layer` (see [`AttentionConfig::from_hf_config_layer`]).
fn hf_layer_window(o: &Obj, layer: usize) -> Result<Option<usize>> {
    let Some(w) = hf_uint("sliding_window", get(o, "sliding_window"))? else {
        return Ok(None);
    };
    if w == 0 {
        return Err(Error::option(
            "hfConfig.sliding_window",
            "an integer >= 1 (or null)",
            0,
        ));
    }
    // Qwen2Config drops the window when use_sliding_window is false, whatever layer_types says.
    if get(o, "use_sliding_window").is_some_and(|u| u.as_bool() == Some(false)) {
        return Ok(None);
    }
    let sliding = if let Some(types) = get(o, "layer_types") {
        let kind = types
            .as_array()
            .and_then(|a| a.get(layer))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::option(
                    "hfConfig.layer_types",
                    format!("an array of strings with an entry for layer {layer}"),
                    short(types),
                )
            })?;
        kind == "sliding_attention"
    } else if get(o, "use_sliding_window").is_some() {
        let max_window_layers =
            hf_uint("max_window_layers", get(o, "max_window_layers"))?.unwrap_or(28);
        layer >= max_window_layers
    } else {
        true
    };
    Ok(sliding.then_some(w))
}

/// A non-null value of `o`.
fn get<'a>(o: &'a Obj, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|x| !x.is_null())
}

/// A number at `hfConfig.{key}`, or nothing.
fn num(key: &str, x: Option<&Value>) -> Result<Option<f64>> {
    match x {
        None => Ok(None),
        Some(x) => x
            .as_f64()
            .map(Some)
            .ok_or_else(|| Error::option(&format!("hfConfig.{key}"), "a number", short(x))),
    }
}

/// The rotary part of a `config.json`: transformers 5's `rope_parameters`, else
/// `rope_scaling`, next to the top-level keys.
struct RopeDict<'a> {
    top: &'a Obj,
    key: &'static str,
    dict: Option<&'a Obj>,
    max_pos: Option<usize>,
    top_orig: Option<usize>,
}

impl<'a> RopeDict<'a> {
    fn new(top: &'a Obj) -> Result<Self> {
        let max_pos = hf_uint(
            "max_position_embeddings",
            get(top, "max_position_embeddings"),
        )?;
        let top_orig = hf_uint(
            "original_max_position_embeddings",
            get(top, "original_max_position_embeddings"),
        )?;
        let (key, d) = match (get(top, "rope_parameters"), get(top, "rope_scaling")) {
            (Some(p), _) => ("rope_parameters", Some(p)),
            (None, Some(p)) => ("rope_scaling", Some(p)),
            (None, None) => ("rope_scaling", None),
        };
        let dict = match d {
            Some(x) => Some(x.as_object().ok_or_else(|| {
                Error::option(
                    &format!("hfConfig.{key}"),
                    "a JSON object or null",
                    short(x),
                )
            })?),
            None => None,
        };
        Ok(RopeDict {
            top,
            key,
            dict,
            max_pos,
            top_orig,
        })
    }

    fn rget(&self, k: &str) -> Option<&'a Value> {
        self.dict.and_then(|m| m.get(k)).filter(|x| !x.is_null())
    }

    /// A number of the dict (named `{key}.{k}`).
    fn f(&self, k: &str) -> Result<Option<f64>> {
        num(&format!("{}.{k}", self.key), self.rget(k))
    }

    /// `rope_theta` of the dict, else the top level, else 10000.
    fn theta(&self) -> Result<f64> {
        Ok(match self.f("rope_theta")? {
            Some(t) => t,
            None => {
                num("rope_theta", get(self.top, "rope_theta"))?.unwrap_or(crate::rope::ROPE_BASE)
            }
        })
    }

    /// `partial_rotary_factor` (dict, else top level) must be 1 when given.
    fn check_partial(&self) -> Result<()> {
        let prf_key = format!("{}.partial_rotary_factor", self.key);
        let prf = match num(&prf_key, self.rget("partial_rotary_factor"))? {
            Some(x) => Some((prf_key, x)),
            None => num(
                "partial_rotary_factor",
                get(self.top, "partial_rotary_factor"),
            )?
            .map(|x| ("partial_rotary_factor".to_string(), x)),
        };
        match prf {
            Some((k, f)) if f != 1.0 => Err(Error::option(
                &format!("hfConfig.{k}"),
                "1 (partial rotary is not supported)",
                f,
            )),
            _ => Ok(()),
        }
    }

    /// The `rope_type` (or old `type`) and the key it was read from.
    fn rope_type(&self) -> Result<(&'static str, String)> {
        let (type_key, ty) = match (self.rget("rope_type"), self.rget("type")) {
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
                        &format!("hfConfig.{}.{type_key}", self.key),
                        "a string",
                        short(t),
                    )
                })?
                .to_string(),
        };
        Ok((type_key, ty))
    }

    /// A value `rope_type` `ty` requires.
    fn need(&self, ty: &str, k: &str) -> Result<f64> {
        self.f(k)?.ok_or_else(|| {
            Error::option(
                &format!("hfConfig.{}.{k}", self.key),
                format!("a value (required for rope_type {ty})"),
                "nothing",
            )
        })
    }

    /// `original_max_position_embeddings`: top level, else the dict, else
    /// `max_position_embeddings`.
    fn orig(&self, ty: &str) -> Result<usize> {
        let rint = hf_uint(
            &format!("{}.original_max_position_embeddings", self.key),
            self.rget("original_max_position_embeddings"),
        )?;
        self.top_orig.or(rint).or(self.max_pos).ok_or_else(|| {
            Error::option(
                "hfConfig.max_position_embeddings",
                format!("a value (rope_type {ty} needs it or original_max_position_embeddings)"),
                "nothing",
            )
        })
    }

    /// The scaling of the dict's `rope_type`.
    fn scaling(&self) -> Result<Option<RopeScaling>> {
        let (type_key, ty) = self.rope_type()?;
        Ok(match ty.as_str() {
            "default" => None,
            "linear" => Some(RopeScaling::Linear {
                factor: self.need(&ty, "factor")?,
            }),
            "dynamic" => Some(RopeScaling::Dynamic {
                factor: self.need(&ty, "factor")?,
                original_max_position_embeddings: self.max_pos.ok_or_else(|| {
                    Error::option(
                        "hfConfig.max_position_embeddings",
                        "a value (rope_type dynamic needs it)",
                        "nothing",
                    )
                })?,
            }),
            "yarn" => Some(self.yarn(&ty)?),
            "llama3" => Some(RopeScaling::Llama3 {
                factor: self.need(&ty, "factor")?,
                low_freq_factor: self.need(&ty, "low_freq_factor")?,
                high_freq_factor: self.need(&ty, "high_freq_factor")?,
                original_max_position_embeddings: self.orig(&ty)?,
            }),
            other => {
                return Err(Error::option(
                    &format!("hfConfig.{}.{type_key}", self.key),
                    "one of default, linear, dynamic, yarn, llama3",
                    other,
                ));
            }
        })
    }

    /// Hugging Face `yarn` scaling.
    fn yarn(&self, ty: &str) -> Result<RopeScaling> {
        let orig = self.orig(ty)?;
        let factor = match self.f("factor")? {
            Some(x) => x,
            None => {
                self.max_pos.ok_or_else(|| {
                    Error::option(
                        &format!("hfConfig.{}.factor", self.key),
                        "a value (or max_position_embeddings)",
                        "nothing",
                    )
                })? as f64
                    / orig as f64
            }
        };
        let truncate = match self.rget("truncate") {
            None => None,
            Some(x) => Some(x.as_bool().ok_or_else(|| {
                Error::option(
                    &format!("hfConfig.{}.truncate", self.key),
                    "true or false",
                    short(x),
                )
            })?),
        };
        Ok(RopeScaling::Yarn {
            factor,
            original_max_position_embeddings: orig,
            beta_fast: self.f("beta_fast")?,
            beta_slow: self.f("beta_slow")?,
            attention_factor: self.f("attention_factor")?,
            mscale: self.f("mscale")?,
            mscale_all_dim: self.f("mscale_all_dim")?,
            truncate,
        })
    }
}

/// A `config.json` size: absent (or null) -> `None`; else a non-negative integer, or
/// [`Error::InvalidOption`] naming `hfConfig.{key}`.
fn hf_uint(key: &str, x: Option<&Value>) -> Result<Option<usize>> {
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

/// A JSON value for an error message (at most 60 characters).
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}
