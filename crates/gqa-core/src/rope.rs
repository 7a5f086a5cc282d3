//! Rotary position embeddings (SPEC section 5): half-rotation ("rotate_half", GPT-NeoX /
//! Hugging Face) convention, base `ropeTheta` (default 10000), with Edifice's YaRN-named
//! frequency scaling (`yarn: true`) or one of Hugging Face transformers' rope types
//! (`ropeScaling`: linear, dynamic, yarn, llama3; [`RopeScaling`]).
//!
//! Precision (what PyTorch references do): plain and Edifice-yarn `inv_freq` are computed in
//! f64 and rounded to f32; the Hugging Face rope types follow transformers'
//! `modeling_rope_utils` operation by operation in f32 (exponent `2i/dim` in f32, `base^e` and
//! the ramps in f32), see [`hf_inv_freq`]. The angle `pos * inv_freq` is an f64 product of the
//! exact position and the f32 frequency (Hugging Face forms `position_ids.float() * inv_freq` in
//! f32, which differs by at most `pos * inv_freq * 2^-24` radians and loses precision as positions
//! grow; the ONNX export and the PyTorch twin form it in f64 too); `cos`/`sin` of that angle are
//! evaluated in f64 and rounded to f32, then multiplied (f32) by the attention factor (1 except
//! for yarn).

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Rotary base (`theta`), 10000 as in RoFormer (Su et al., 2021) and Edifice; the default of
/// `ropeTheta`.
pub const ROPE_BASE: f64 = 10000.0;

/// Hugging Face transformers' rotary scaling (`rope_scaling` / `rope_parameters`, field names in
/// camelCase, `type` = transformers' `rope_type`). Source of every formula:
/// transformers `src/transformers/modeling_rope_utils.py` (`_compute_*_parameters`), checked
/// against transformers 5.x by the fixtures of `scripts/gen_rope_fixtures.py`.
///
/// With `d = headDim`, `base = ropeTheta`, `inv[i] = 1 / base^(2i/d)` (`i < d/2`):
///
/// - `linear`: `inv[i] / factor`; attention factor 1.
/// - `dynamic` (NTK-aware, recomputed per sequence length `L`): with
///   `L' = max(L, originalMaxPositionEmbeddings)`,
///   `base' = base * (factor * L' / orig - (factor - 1))^(d / (d - 2))`, `inv'[i] = 1 / base'^(2i/d)`;
///   attention factor 1. `L` is the length of the sequence being run: `T` for a full forward,
///   and in a KV-cache session the largest cached length after the push (transformers'
///   `max(position_ids) + 1`); keys already cached keep the frequencies they were rotated with,
///   as in transformers' cache. `orig` is transformers' `config.max_position_embeddings`.
/// - `yarn` (Peng et al., 2023, "YaRN"): `low = d*ln(orig/(betaFast*2pi)) / (2 ln base)`,
///   `high` the same with `betaSlow` (floor / ceil when `truncate`, default true), clipped to
///   `[0, d-1]`; `ramp[i] = clamp((i - low)/(high - low), 0, 1)` (`high += 0.001` when equal);
///   `inv'[i] = inv[i]/factor * ramp[i] + inv[i] * (1 - ramp[i])`. Attention factor (on cos
///   and sin): `attentionFactor` if given, else `m(factor, mscale) / m(factor, mscaleAllDim)`
///   when both `mscale` and `mscaleAllDim` are given and non-zero, else `m(factor, 1)`, where
///   `m(s, k) = 1` for `s <= 1`, else `0.1 * k * ln(s) + 1`. `betaFast` defaults to 32,
///   `betaSlow` to 1 (a 0 also means the default, as transformers' `or`).
/// - `llama3`: `wavelen = 2pi / inv[i]`, `lowWav = orig / lowFreqFactor`,
///   `highWav = orig / highFreqFactor`; `wavelen > lowWav`: `inv/factor`; `wavelen < highWav`:
///   `inv`; otherwise, with `s = (orig/wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)`,
///   `(1 - s) * inv/factor + s * inv`. Attention factor 1.
///
/// Edifice's `yarn: true` is a different scaling (SPEC section 5): its ramp runs over
/// wavelengths between `orig/4` and `orig` (not over dimension indices from `betaFast`/`betaSlow`
/// rotation counts), it divides by `yarnScale` inside the ramp, and it has no attention factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum RopeScaling {
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// Scale factor (> 0).
        factor: f64,
    },
    /// Dynamic NTK scaling: the base grows with the sequence length beyond
    /// `originalMaxPositionEmbeddings`.
    Dynamic {
        /// Scale factor (> 0).
        factor: f64,
        /// Context length the model was trained with (transformers: `max_position_embeddings`).
        original_max_position_embeddings: usize,
    },
    /// YaRN as transformers defines it.
    Yarn {
        /// Scale factor (> 0).
        factor: f64,
        /// Pretraining context length.
        original_max_position_embeddings: usize,
        /// Rotations at the extrapolation end of the ramp, default 32.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        beta_fast: Option<f64>,
        /// Rotations at the interpolation end of the ramp, default 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        beta_slow: Option<f64>,
        /// Factor on cos and sin; inferred from `factor` (and `mscale`, `mscaleAllDim`) when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attention_factor: Option<f64>,
        /// DeepSeek-style numerator coefficient of the inferred attention factor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mscale: Option<f64>,
        /// DeepSeek-style denominator coefficient of the inferred attention factor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mscale_all_dim: Option<f64>,
        /// Round the correction range outwards (floor/ceil), default true.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        truncate: Option<bool>,
    },
    /// Llama 3.1's band-wise scaling.
    Llama3 {
        /// Scale factor (> 0) of the low-frequency band.
        factor: f64,
        /// `lowWav = orig / lowFreqFactor` (> 0).
        low_freq_factor: f64,
        /// `highWav = orig / highFreqFactor` (> lowFreqFactor).
        high_freq_factor: f64,
        /// Pretraining context length.
        original_max_position_embeddings: usize,
    },
}

impl RopeScaling {
    /// The `type` string (`linear`, `dynamic`, `yarn`, `llama3`).
    pub fn type_name(&self) -> &'static str {
        match self {
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Dynamic { .. } => "dynamic",
            RopeScaling::Yarn { .. } => "yarn",
            RopeScaling::Llama3 { .. } => "llama3",
        }
    }

    /// Checks the values (names the field as `ropeScaling.<field>`).
    ///
    /// # Errors
    /// [`Error::InvalidOption`]: `factor` not finite > 0, `originalMaxPositionEmbeddings` 0,
    /// llama3 `lowFreqFactor` not > 0 or `highFreqFactor` not > `lowFreqFactor`, yarn
    /// `attentionFactor` not finite > 0, a non-finite `betaFast`/`betaSlow`/`mscale`/`mscaleAllDim`.
    pub fn validate(&self) -> Result<()> {
        let pos = |name: &str, v: f64| -> Result<()> {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(Error::option(
                    &format!("ropeScaling.{name}"),
                    "a finite number > 0",
                    v,
                ))
            }
        };
        let orig = |v: usize| -> Result<()> {
            if v >= 1 {
                Ok(())
            } else {
                Err(Error::option(
                    "ropeScaling.originalMaxPositionEmbeddings",
                    "an integer >= 1",
                    v,
                ))
            }
        };
        let finite = |name: &str, v: Option<f64>| -> Result<()> {
            match v {
                Some(x) if !x.is_finite() => Err(Error::option(
                    &format!("ropeScaling.{name}"),
                    "a finite number",
                    x,
                )),
                _ => Ok(()),
            }
        };
        match *self {
            RopeScaling::Linear { factor } => pos("factor", factor),
            RopeScaling::Dynamic {
                factor,
                original_max_position_embeddings,
            } => {
                pos("factor", factor)?;
                orig(original_max_position_embeddings)
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                mscale,
                mscale_all_dim,
                ..
            } => {
                pos("factor", factor)?;
                orig(original_max_position_embeddings)?;
                if let Some(a) = attention_factor {
                    pos("attentionFactor", a)?;
                }
                finite("betaFast", beta_fast)?;
                finite("betaSlow", beta_slow)?;
                finite("mscale", mscale)?;
                finite("mscaleAllDim", mscale_all_dim)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                pos("factor", factor)?;
                pos("lowFreqFactor", low_freq_factor)?;
                if !(high_freq_factor > low_freq_factor && high_freq_factor.is_finite()) {
                    return Err(Error::option(
                        "ropeScaling.highFreqFactor",
                        format!("a finite number > lowFreqFactor = {low_freq_factor}"),
                        high_freq_factor,
                    ));
                }
                orig(original_max_position_embeddings)
            }
        }
    }

    /// The attention factor on cos and sin (yarn's, see the type's doc; 1 otherwise), in f64 as
    /// transformers computes it.
    pub fn attention_factor(&self) -> f64 {
        match *self {
            RopeScaling::Yarn {
                factor,
                attention_factor,
                mscale,
                mscale_all_dim,
                ..
            } => {
                let m = |s: f64, k: f64| {
                    if s <= 1.0 {
                        1.0
                    } else {
                        0.1 * k * s.ln() + 1.0
                    }
                };
                match (attention_factor, mscale, mscale_all_dim) {
                    (Some(a), _, _) => a,
                    (None, Some(ms), Some(ma)) if ms != 0.0 && ma != 0.0 => {
                        m(factor, ms) / m(factor, ma)
                    }
                    _ => m(factor, 1.0),
                }
            }
            _ => 1.0,
        }
    }

    /// For `dynamic`: the length above which the frequencies change (`originalMaxPositionEmbeddings`).
    pub fn dynamic_threshold(&self) -> Option<usize> {
        match *self {
            RopeScaling::Dynamic {
                original_max_position_embeddings,
                ..
            } => Some(original_max_position_embeddings),
            _ => None,
        }
    }
}

/// transformers' default frequencies in f32: `1 / base_f32^(f32(2i) / f32(d))` (the exponent as
/// an f32 tensor, the power rounded to f32, then the f32 reciprocal).
fn hf_default_inv_freq_f32(head_dim: usize, base: f64) -> Vec<f32> {
    let b = f64::from(base as f32);
    (0..head_dim / 2)
        .map(|i| {
            let e = (2 * i) as f32 / head_dim as f32;
            1.0f32 / (b.powf(f64::from(e)) as f32)
        })
        .collect()
}

/// Hugging Face rope frequencies `[headDim/2]` (f32) and attention factor for `scaling`, base
/// `theta`, at sequence length `seq_len` (used by `dynamic` only), following transformers'
/// `modeling_rope_utils` (see [`RopeScaling`] for the formulas) in its f32 operation order.
/// `None` = transformers' `default` rope type.
pub fn hf_inv_freq(
    head_dim: usize,
    theta: f64,
    scaling: Option<&RopeScaling>,
    seq_len: usize,
) -> (Vec<f32>, f64) {
    let d = head_dim;
    match scaling {
        None => (hf_default_inv_freq_f32(d, theta), 1.0),
        Some(RopeScaling::Linear { factor }) => {
            let f = *factor as f32;
            (
                hf_default_inv_freq_f32(d, theta)
                    .into_iter()
                    .map(|x| x / f)
                    .collect(),
                1.0,
            )
        }
        Some(RopeScaling::Dynamic {
            factor,
            original_max_position_embeddings: orig,
        }) => (hf_dynamic_inv_freq(d, theta, *factor, *orig, seq_len), 1.0),
        Some(
            s @ RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: orig,
                beta_fast,
                beta_slow,
                truncate,
                ..
            },
        ) => {
            let (low, high) =
                hf_yarn_correction_range(d, theta, *orig, *beta_fast, *beta_slow, *truncate);
            (
                hf_yarn_inv_freq(d, theta, *factor, low, high),
                s.attention_factor(),
            )
        }
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: orig,
        }) => (
            hf_llama3_inv_freq(
                d,
                theta,
                *factor,
                *low_freq_factor,
                *high_freq_factor,
                *orig,
            ),
            1.0,
        ),
    }
}

/// transformers' dynamic NTK frequencies `[d/2]` (f32) at sequence length `seq_len`: the
/// default frequencies of base `theta * (factor*L/orig - (factor-1))^(d/(d-2))` (f64), with
/// `L = max(seq_len, orig)`.
fn hf_dynamic_inv_freq(d: usize, theta: f64, factor: f64, orig: usize, seq_len: usize) -> Vec<f32> {
    let orig = orig as f64;
    let l = (seq_len as f64).max(orig);
    let base = theta * ((factor * l / orig) - (factor - 1.0)).powf(d as f64 / (d as f64 - 2.0));
    hf_default_inv_freq_f32(d, base)
}

/// yarn's correction range `(low, high)` (dimension indices, f64): where `beta_fast` and
/// `beta_slow` rotations (defaults 32 and 1, also for 0) fit in `orig` positions, rounded
/// outwards unless `truncate` is false, clamped to `[0, d-1]`, `high` nudged by 0.001 when
/// equal to `low`.
fn hf_yarn_correction_range(
    d: usize,
    theta: f64,
    orig: usize,
    beta_fast: Option<f64>,
    beta_slow: Option<f64>,
    truncate: Option<bool>,
) -> (f64, f64) {
    let beta_fast = beta_fast.filter(|&b| b != 0.0).unwrap_or(32.0);
    let beta_slow = beta_slow.filter(|&b| b != 0.0).unwrap_or(1.0);
    let df = d as f64;
    let corr = |rot: f64| {
        df * (orig as f64 / (rot * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln())
    };
    let (mut low, mut high) = (corr(beta_fast), corr(beta_slow));
    if truncate.unwrap_or(true) {
        low = low.floor();
        high = high.ceil();
    }
    let low = low.max(0.0);
    let mut high = high.min(df - 1.0);
    if low == high {
        high += 0.001;
    }
    (low, high)
}

/// yarn's frequencies `[d/2]` (f32): per dimension `i`, a blend of the extrapolated
/// `1/pos_freq` and the interpolated `1/(factor*pos_freq)` by a linear ramp over the
/// correction range `[low, high]` (from [`hf_yarn_correction_range`]), in f32 as transformers.
fn hf_yarn_inv_freq(d: usize, theta: f64, factor: f64, low: f64, high: f64) -> Vec<f32> {
    let (low32, span32) = (low as f32, (high - low) as f32);
    let b = f64::from(theta as f32);
    let f = factor as f32;
    (0..d / 2)
        .map(|i| {
            let pos_freq = b.powf(f64::from((2 * i) as f32 / d as f32)) as f32;
            let extra = 1.0f32 / pos_freq;
            let inter = 1.0f32 / (f * pos_freq);
            let ramp = ((i as f32 - low32) / span32).clamp(0.0, 1.0);
            let ext_factor = 1.0f32 - ramp;
            inter * (1.0 - ext_factor) + extra * ext_factor
        })
        .collect()
}

/// Llama 3.1's band-wise frequencies `[d/2]` (f32): default frequencies whose wavelength
/// exceeds `orig / low_freq_factor` divided by `factor`, those under `orig / high_freq_factor`
/// kept, and a smooth blend between, in transformers' f32 operation order.
fn hf_llama3_inv_freq(
    d: usize,
    theta: f64,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    orig: usize,
) -> Vec<f32> {
    let origf = orig as f64;
    let low_wav = (origf / low_freq_factor) as f32;
    let high_wav = (origf / high_freq_factor) as f32;
    let (f, lo, span, o) = (
        factor as f32,
        low_freq_factor as f32,
        (high_freq_factor - low_freq_factor) as f32,
        origf as f32,
    );
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    hf_default_inv_freq_f32(d, theta)
        .into_iter()
        .map(|x| {
            // transformers: `2 * math.pi / inv_freq` is `inv_freq.reciprocal() * (2*pi)`.
            let wavelen = (1.0f32 / x) * two_pi;
            let scaled = if wavelen > low_wav { x / f } else { x };
            if wavelen < high_wav || wavelen > low_wav {
                scaled
            } else {
                let s = ((1.0f32 / wavelen) * o - lo) / span;
                (1.0 - s) * scaled / f + s * scaled
            }
        })
        .collect()
}

/// Plain RoPE frequencies: `inv_freq[i] = base^(-2i/headDim)`, `i < headDim/2`, in f64, base
/// 10000 (Edifice's rotary).
pub fn rope_inv_freq_f64(head_dim: usize) -> Vec<f64> {
    rope_inv_freq_theta_f64(head_dim, ROPE_BASE)
}

/// Plain RoPE frequencies with base `theta`: `theta^(-2i/headDim)` in f64.
pub fn rope_inv_freq_theta_f64(head_dim: usize, theta: f64) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| theta.powf(-((2 * i) as f64) / head_dim as f64))
        .collect()
}

/// Edifice's `yarn: true` frequencies (SPEC section 5; not the YaRN paper's formula), in f64:
/// `wavelen = 2*pi/inv_freq`, `lowWav = orig`, `highWav = orig/4`,
/// `ramp = clip((wavelen - highWav)/(lowWav - highWav), 0, 1)`,
/// `inv_freq' = inv_freq * (ramp/scale + (1 - ramp))`; no attention temperature. Base 10000.
pub fn edifice_yarn_inv_freq_f64(
    head_dim: usize,
    scale: f64,
    original_max_position: usize,
) -> Vec<f64> {
    edifice_yarn_inv_freq_theta_f64(head_dim, ROPE_BASE, scale, original_max_position)
}

/// [`edifice_yarn_inv_freq_f64`] with base `theta`.
pub fn edifice_yarn_inv_freq_theta_f64(
    head_dim: usize,
    theta: f64,
    scale: f64,
    original_max_position: usize,
) -> Vec<f64> {
    let low_wav = original_max_position as f64 / 1.0;
    let high_wav = original_max_position as f64 / 4.0;
    rope_inv_freq_theta_f64(head_dim, theta)
        .into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let ramp = ((wavelen - high_wav) / (low_wav - high_wav)).clamp(0.0, 1.0);
            f * (ramp / scale + (1.0 - ramp))
        })
        .collect()
}

/// The f32 `inv_freq` [headDim/2] a config uses: `None` without rotary, Edifice yarn when
/// `yarn` (which implies rotary), else plain RoPE (base 10000).
pub fn inv_freq_for(
    head_dim: usize,
    rope: bool,
    yarn: bool,
    yarn_scale: f64,
    yarn_orig: usize,
) -> Option<Vec<f32>> {
    if yarn {
        Some(
            edifice_yarn_inv_freq_f64(head_dim, yarn_scale, yarn_orig)
                .into_iter()
                .map(|f| f as f32)
                .collect(),
        )
    } else if rope {
        Some(
            rope_inv_freq_f64(head_dim)
                .into_iter()
                .map(|f| f as f32)
                .collect(),
        )
    } else {
        None
    }
}

/// Refuses rotary options whose tables would not be finite: every frequency `inv_freq` (times
/// 2^31 positions) and the attention factor must be finite f32 values, else the cos/sin tables
/// (and so every output) hold NaN or Inf. Names the option responsible: `ropeTheta` when the
/// plain frequencies already overflow, else `yarnScale`, `ropeScaling.attentionFactor` (or
/// `ropeScaling.factor` when the factor is inferred) or `ropeScaling.factor`.
///
/// # Errors
/// [`Error::InvalidOption`] naming that option.
pub(crate) fn check_finite_tables(cfg: &crate::config::GqaConfig) -> Result<()> {
    let Some(plan) = cfg.rope_plan() else {
        return Ok(());
    };
    let d = cfg.head_dim();
    let ok = |f: &[f32]| {
        f.iter()
            .all(|&x| x.is_finite() && x >= 0.0 && (x * 2147483648.0f32).is_finite())
    };
    let plain: Vec<f32> = rope_inv_freq_theta_f64(d, cfg.rope_theta)
        .into_iter()
        .map(|f| f as f32)
        .collect();
    let expect = "a value whose rotary frequencies and factors are finite f32 numbers";
    if !ok(&plain) {
        return Err(Error::option("ropeTheta", expect, cfg.rope_theta));
    }
    let af = plan.attention_factor;
    if !(af.is_finite() && af != 0.0) {
        if let Some(RopeScaling::Yarn {
            attention_factor: Some(a),
            ..
        }) = &cfg.rope_scaling
        {
            return Err(Error::option("ropeScaling.attentionFactor", expect, a));
        }
    }
    if !(ok(&plan.inv_freq) && af.is_finite() && af != 0.0) {
        if cfg.yarn {
            return Err(Error::option("yarnScale", expect, cfg.yarn_scale));
        }
        if let Some(s) = &cfg.rope_scaling {
            let factor = match *s {
                RopeScaling::Linear { factor }
                | RopeScaling::Dynamic { factor, .. }
                | RopeScaling::Yarn { factor, .. }
                | RopeScaling::Llama3 { factor, .. } => factor,
            };
            return Err(Error::option("ropeScaling.factor", expect, factor));
        }
        return Err(Error::option("ropeTheta", expect, cfg.rope_theta));
    }
    Ok(())
}

/// How a layer's rotary tables are made: from fixed frequencies (plain RoPE, Edifice yarn and
/// every Hugging Face type but `dynamic`, computed once per config) or, for `dynamic`, from
/// frequencies recomputed for the sequence length when it exceeds the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct RopePlan {
    head_dim: usize,
    theta: f64,
    scaling: Option<RopeScaling>,
    /// Frequencies at lengths up to the dynamic threshold (all lengths for the other types).
    inv_freq: Vec<f32>,
    attention_factor: f32,
}

impl RopePlan {
    /// The plan of a config: `None` without rotary. `scaling` (Hugging Face) and `yarn`
    /// (Edifice) are exclusive (the configs' validation says so); neither = plain RoPE with
    /// base `theta` (f64 formula).
    pub fn new(
        head_dim: usize,
        rope: bool,
        theta: f64,
        yarn: Option<(f64, usize)>,
        scaling: Option<&RopeScaling>,
    ) -> Option<Self> {
        let (inv_freq, af) = match (scaling, yarn) {
            (Some(s), _) => {
                let (inv, af) = hf_inv_freq(head_dim, theta, Some(s), 0);
                (inv, af as f32)
            }
            (None, Some((scale, orig))) => (
                edifice_yarn_inv_freq_theta_f64(head_dim, theta, scale, orig)
                    .into_iter()
                    .map(|f| f as f32)
                    .collect(),
                1.0,
            ),
            (None, None) if rope => (
                rope_inv_freq_theta_f64(head_dim, theta)
                    .into_iter()
                    .map(|f| f as f32)
                    .collect(),
                1.0,
            ),
            _ => return None,
        };
        Some(RopePlan {
            head_dim,
            theta,
            scaling: scaling.cloned(),
            inv_freq,
            attention_factor: af,
        })
    }

    /// Frequencies `[headDim/2]` (f32) and attention factor (f32) for a sequence of `seq_len`
    /// positions (only `dynamic` depends on it).
    pub fn inv_freq(&self, seq_len: usize) -> (Vec<f32>, f32) {
        match self.dynamic_threshold() {
            Some(th) if seq_len > th => {
                let (inv, af) =
                    hf_inv_freq(self.head_dim, self.theta, self.scaling.as_ref(), seq_len);
                (inv, af as f32)
            }
            _ => (self.inv_freq.clone(), self.attention_factor),
        }
    }

    /// `Some(originalMaxPositionEmbeddings)` for `dynamic` scaling.
    pub fn dynamic_threshold(&self) -> Option<usize> {
        self.scaling
            .as_ref()
            .and_then(RopeScaling::dynamic_threshold)
    }

    /// Tables for positions `0..positions` of a sequence of `seq_len` positions.
    ///
    /// # Errors
    /// As [`Rotary::new`].
    pub fn rotary(&self, seq_len: usize, positions: usize, device: &Device) -> Result<Rotary> {
        let (inv, af) = self.inv_freq(seq_len);
        Rotary::build(&inv, af, positions, 0, device)
    }

    /// Tables for the `count` positions `first..first + count` (row `i` is position
    /// `first + i`) of a sequence of `seq_len` positions ([`Rotary::build_span`]).
    ///
    /// # Errors
    /// As [`Rotary::new`].
    pub fn rotary_span(
        &self,
        seq_len: usize,
        first: usize,
        count: usize,
        device: &Device,
    ) -> Result<Rotary> {
        let (inv, af) = self.inv_freq(seq_len);
        Rotary::build_span(&inv, af, first, count, device)
    }

    /// Tables for the `t` positions `first..first + t` of a sequence that starts at absolute
    /// position `first` (`positionOffset`; a `dynamic` ropeScaling sees the length `first + t`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `positionOffset` when `first + t` overflows; as
    /// [`Rotary::new`].
    pub fn rotary_at(&self, first: usize, t: usize, device: &Device) -> Result<Rotary> {
        let end = crate::input::end_position(first, t)?;
        self.rotary_span(end, first, t, device)
    }

    /// Tables for explicit positions (row `i` is position `positions[i]`) of a sequence of
    /// `seq_len` positions ([`Rotary::build_at`]): a windowed session's per-row positions.
    ///
    /// # Errors
    /// As [`Rotary::new`].
    pub fn rotary_positions(
        &self,
        seq_len: usize,
        positions: &[usize],
        device: &Device,
    ) -> Result<Rotary> {
        let (inv, af) = self.inv_freq(seq_len);
        Rotary::build_at(&inv, af, positions, device)
    }

    /// Tables for positions `0..positions` where only rows `from..positions` are filled (the
    /// others are zero and must not be read), at sequence length `seq_len`: what a KV-cache
    /// push needs with `dynamic` scaling (its new positions are all `>= from`).
    ///
    /// # Errors
    /// As [`Rotary::new`].
    pub fn rotary_rows(
        &self,
        seq_len: usize,
        positions: usize,
        from: usize,
        device: &Device,
    ) -> Result<Rotary> {
        let (inv, af) = self.inv_freq(seq_len);
        Rotary::build(&inv, af, positions, from, device)
    }
}

/// Appends `factor * cos(p * f)` and `factor * sin(p * f)` for each position `p` of
/// `positions` and each inverse frequency `f`: the angle `p * f` is formed in f64 from the exact
/// position (so it does not lose precision as positions grow; transformers forms it in f32, which
/// differs by at most `p * f * 2^-24` radians), cos and sin in f64, then rounded to f32 and
/// multiplied by the factor in f32 (as transformers' `emb.cos() * attention_scaling`).
fn push_angles(
    inv_freq: &[f32],
    factor: f32,
    positions: std::ops::Range<usize>,
    cos: &mut Vec<f32>,
    sin: &mut Vec<f32>,
) {
    for p in positions {
        let pf = p as f64;
        for &f in inv_freq {
            let a = pf * f64::from(f);
            cos.push(a.cos() as f32 * factor);
            sin.push(a.sin() as f32 * factor);
        }
    }
}

/// `cos`/`sin` tables `[P, D/2]` (f32) for positions `0..P`.
#[derive(Debug, Clone)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
    positions: usize,
    half: usize,
}

impl Rotary {
    /// Builds the tables for positions `0..positions` from `inv_freq` (`[D/2]`).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] for tables over the buffer limit; [`Error::Backend`] from candle.
    pub fn new(inv_freq: &[f32], positions: usize, device: &Device) -> Result<Self> {
        Self::build(inv_freq, 1.0, positions, 0, device)
    }

    /// Tables `attention_factor * cos`, `attention_factor * sin` (f32 products, as transformers'
    /// `emb.cos() * attention_scaling`; angles formed in f64 from the exact position) for
    /// positions `0..positions`, rows below `from` left zero.
    ///
    /// # Errors
    /// As [`Rotary::new`].
    pub fn build(
        inv_freq: &[f32],
        attention_factor: f32,
        positions: usize,
        from: usize,
        device: &Device,
    ) -> Result<Self> {
        let half = inv_freq.len();
        let n = crate::error::check_f32_buffer("rotary tables", &[positions, half])?;
        let from = from.min(positions);
        let mut cos = vec![0f32; from * half];
        let mut sin = vec![0f32; from * half];
        cos.reserve(n - from * half);
        sin.reserve(n - from * half);
        push_angles(
            inv_freq,
            attention_factor,
            from..positions,
            &mut cos,
            &mut sin,
        );
        Ok(Rotary {
            cos: Tensor::from_vec(cos, (positions, half), device)?,
            sin: Tensor::from_vec(sin, (positions, half), device)?,
            positions,
            half,
        })
    }

    /// Tables for the `count` positions `first..first + count` (row `i` is position
    /// `first + i`): what a windowed session or a forward at `positionOffset` reads, however
    /// large `first` is (angles formed in f64: as exact at position 10^9 as at 10).
    ///
    /// # Errors
    /// As [`Rotary::new`].
    pub fn build_span(
        inv_freq: &[f32],
        attention_factor: f32,
        first: usize,
        count: usize,
        device: &Device,
    ) -> Result<Self> {
        let half = inv_freq.len();
        let n = crate::error::check_f32_buffer("rotary tables", &[count, half])?;
        let mut cos = Vec::with_capacity(n);
        let mut sin = Vec::with_capacity(n);
        push_angles(
            inv_freq,
            attention_factor,
            first..first + count,
            &mut cos,
            &mut sin,
        );
        Ok(Rotary {
            cos: Tensor::from_vec(cos, (count, half), device)?,
            sin: Tensor::from_vec(sin, (count, half), device)?,
            positions: count,
            half,
        })
    }

    /// Tables for explicit positions: row `i` is position `positions[i]` (angles as
    /// [`Rotary::build`]).
    ///
    /// # Errors
    /// As [`Rotary::new`].
    pub fn build_at(
        inv_freq: &[f32],
        attention_factor: f32,
        positions: &[usize],
        device: &Device,
    ) -> Result<Self> {
        let half = inv_freq.len();
        let count = positions.len();
        let n = crate::error::check_f32_buffer("rotary tables", &[count, half])?;
        let mut cos = Vec::with_capacity(n);
        let mut sin = Vec::with_capacity(n);
        for &p in positions {
            push_angles(inv_freq, attention_factor, p..p + 1, &mut cos, &mut sin);
        }
        Ok(Rotary {
            cos: Tensor::from_vec(cos, (count, half), device)?,
            sin: Tensor::from_vec(sin, (count, half), device)?,
            positions: count,
            half,
        })
    }

    /// Number of positions the tables cover.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// The cosine table `[P, D/2]`.
    pub fn cos(&self) -> &Tensor {
        &self.cos
    }

    /// The sine table `[P, D/2]`.
    pub fn sin(&self) -> &Tensor {
        &self.sin
    }

    /// Rotates `x: [B, N, T, D]` (N query or KV heads) for positions `offset..offset+T`
    /// (`offset` = KV-cache length): `x1 = x[..., :D/2]`, `x2 = x[..., D/2:]`,
    /// `out = concat(x1*cos - x2*sin, x1*sin + x2*cos)`. Returns a contiguous `[B, N, T, D]`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `D != 2 * inv_freq.len()` or the positions exceed the
    /// tables; [`Error::Backend`] from candle.
    pub fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (_b, _n, t, d) = x.dims4()?;
        if d != 2 * self.half {
            return Err(Error::input(
                "rotary input",
                format!("head_dim {}", 2 * self.half),
                d,
            ));
        }
        if offset + t > self.positions {
            return Err(Error::input(
                "rotary positions",
                format!("at most {} positions", self.positions),
                offset + t,
            ));
        }
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.sin.narrow(0, offset, t)?;
        rotate_half(x, &cos, &sin)
    }
}

/// The rotary rotation itself, shared by [`Rotary::apply`] (one table for every row) and the
/// KV-cache session (per-row tables, rows at different positions):
/// `out = concat(x1*cos - x2*sin, x1*sin + x2*cos)` with `x1, x2` the halves of the last dim
/// (rotate_half convention; SPEC section 5; Hugging Face transformers `apply_rotary_pos_emb`).
///
/// Shapes: `x: [B, N, T, D]`; `cos, sin` broadcastable to `[B, N, T, D/2]` (`[T, D/2]` or
/// `[B, 1, T, D/2]`). Returns a contiguous `[B, N, T, D]`.
///
/// # Errors
/// [`Error::Backend`] from candle when the shapes do not broadcast.
pub fn rotate_half(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(3)? / 2;
    let x1 = x.narrow(3, 0, half)?;
    let x2 = x.narrow(3, half, half)?;
    let r1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let r2 = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
    Ok(Tensor::cat(&[&r1, &r2], 3)?)
}
