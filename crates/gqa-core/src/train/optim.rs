//! AdamW with decoupled weight decay, and gradient clipping by global norm.

use std::sync::Mutex;

use candle_core::{backprop::GradStore, CpuStorage, InplaceOp1, Layout, Tensor, Var};

use crate::error::{Error, Result};
use crate::kernels::cpu::{par_for, OutPtr};

/// AdamW hyper-parameters (PyTorch `torch.optim.AdamW` defaults except `weight_decay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (overridden per step by a schedule through [`AdamW::step`]'s `lr`).
    pub lr: f64,
    /// `beta1`, default 0.9.
    pub beta1: f64,
    /// `beta2`, default 0.999.
    pub beta2: f64,
    /// `eps`, default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay, default 0.01.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

impl AdamWConfig {
    /// Checks the hyper-parameters.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for `lr < 0`, betas outside `[0, 1)`, `eps <= 0`, `weightDecay < 0`.
    pub fn validate(&self) -> Result<()> {
        let cfg = self;
        if !(cfg.lr >= 0.0 && cfg.lr.is_finite()) {
            return Err(Error::option("lr", "a finite number >= 0", cfg.lr));
        }
        for (name, b) in [("beta1", cfg.beta1), ("beta2", cfg.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::option(name, "a number in [0, 1)", b));
            }
        }
        if cfg.eps.is_nan() || cfg.eps <= 0.0 {
            return Err(Error::option("eps", "a number > 0", cfg.eps));
        }
        if !(cfg.weight_decay >= 0.0 && cfg.weight_decay.is_finite()) {
            return Err(Error::option(
                "weightDecay",
                "a finite number >= 0",
                cfg.weight_decay,
            ));
        }
        Ok(())
    }
}

/// AdamW (Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization"), step for step
/// the update of `torch.optim.AdamW` (single-tensor path):
///
/// ```text
/// p <- p * (1 - lr*wd)
/// m <- b1 m + (1-b1) g ;  v <- b2 v + (1-b2) g^2
/// p <- p - (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
/// ```
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: u64,
}

impl AdamW {
    /// An optimiser over `vars` (order fixed: state is kept per position).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for `lr < 0`, betas outside `[0, 1)`, `eps <= 0`, `weightDecay < 0`.
    pub fn new(vars: Vec<Var>, cfg: AdamWConfig) -> Result<Self> {
        cfg.validate()?;
        let m = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(AdamW {
            cfg,
            vars,
            m,
            v,
            t: 0,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// One update at learning rate `lr` from `grads` (a var without a gradient is left as is,
    /// as PyTorch skips parameters whose `.grad` is `None`).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2_sqrt = (1.0 - c.beta2.powi(self.t as i32)).sqrt();
        let step_size = lr / bc1;
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let p = var.as_tensor().affine(1.0 - lr * c.weight_decay, 0.0)?;
            let m = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((v.sqrt()? / bc2_sqrt)? + c.eps)?;
            let p = (p - (m.div(&denom)? * step_size)?)?;
            var.set(&p)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// Scales every gradient by `min(1, max_norm / (norm + 1e-6))` where `norm` is the global L2
/// norm over all of them (PyTorch `torch.nn.utils.clip_grad_norm_`). Returns the norm before
/// clipping.
pub fn clip_grad_norm(vars: &[Var], grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            sq += super::loss::scalar(&g.sqr()?.sum_all()?)?;
        }
    }
    let norm = sq.sqrt();
    let coef = clip_coefficient(norm, max_norm);
    if coef < 1.0 {
        for var in vars {
            if let Some(g) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (g * coef)?);
            }
        }
    }
    Ok(norm)
}

/// AdamW over plain f32 buffers for the fused training path: the same update as [`AdamW`],
/// operation for operation in f32 (so the two paths agree bitwise for equal gradients), one
/// pass per tensor writing the parameter in place (no new tensors), with global-norm clipping
/// folded in as a gradient scale.
#[derive(Debug)]
pub struct FusedAdamW {
    cfg: AdamWConfig,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: u64,
}

/// The in-place update of one parameter (see [`FusedAdamW::step`]).
struct AdamWUpdate<'a> {
    g: &'a [f32],
    state: Mutex<(&'a mut [f32], &'a mut [f32])>,
    grad_scale: Option<f32>,
    decay: f32,
    b1: f32,
    b2: f32,
    one_minus_b1: f32,
    one_minus_b2: f32,
    inv_bc2: f32,
    eps: f32,
    step_size: f32,
}

impl AdamWUpdate<'_> {
    /// The update of one chunk (the f32 operation order of [`AdamW::step`]).
    fn update(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = match self.grad_scale {
                Some(c) => g * c,
                None => g,
            };
            let pd = *p * self.decay;
            *m = *m * self.b1 + g * self.one_minus_b1;
            *v = *v * self.b2 + (g * g) * self.one_minus_b2;
            let denom = v.sqrt() * self.inv_bc2 + self.eps;
            *p = pd - (*m / denom) * self.step_size;
        }
    }
}

impl InplaceOp1 for AdamWUpdate<'_> {
    fn name(&self) -> &'static str {
        "gqa-adamw"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("gqa-adamw: expected an f32 parameter");
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("gqa-adamw: expected a contiguous parameter");
        };
        let p = &mut data[a..b];
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (m, v) = &mut *st;
        if p.len() != self.g.len() || m.len() != p.len() || v.len() != p.len() {
            candle_core::bail!(
                "gqa-adamw: parameter {} values, gradient {}, state {}",
                p.len(),
                self.g.len(),
                m.len()
            );
        }
        // Elementwise, so chunks run in parallel with results independent of the split.
        const CHUNK: usize = 1 << 14;
        let n = p.len();
        let (pp, mp, vp) = (
            OutPtr(p.as_mut_ptr()),
            OutPtr(m.as_mut_ptr()),
            OutPtr(v.as_mut_ptr()),
        );
        par_for(n.div_ceil(CHUNK), n >= 2 * CHUNK, move |c| {
            let (pp, mp, vp) = (pp, mp, vp);
            let (lo, hi) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            // SAFETY: chunk c covers elements lo..hi of p, m and v (same length n, checked
            // above), disjoint from every other chunk.
            let (p, m, v) = unsafe {
                (
                    std::slice::from_raw_parts_mut(pp.0.add(lo), hi - lo),
                    std::slice::from_raw_parts_mut(mp.0.add(lo), hi - lo),
                    std::slice::from_raw_parts_mut(vp.0.add(lo), hi - lo),
                )
            };
            self.update(p, &self.g[lo..hi], m, v);
        });
        Ok(())
    }
}

impl FusedAdamW {
    /// State for parameters of the given sizes (values each).
    ///
    /// # Errors
    /// As [`AdamWConfig::validate`].
    pub fn new(sizes: &[usize], cfg: AdamWConfig) -> Result<Self> {
        cfg.validate()?;
        let m: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0f32; n]).collect();
        Ok(FusedAdamW {
            v: m.clone(),
            m,
            cfg,
            t: 0,
        })
    }

    /// One update of every var at learning rate `lr` from `grads` (same order and sizes as the
    /// vars), each gradient multiplied by `grad_scale` first when given (clipping).
    ///
    /// # Errors
    /// [`Error::Internal`] when a var's size does not match its gradient; backend errors.
    pub fn step(
        &mut self,
        vars: &[Var],
        grads: &[Vec<f32>],
        grad_scale: Option<f32>,
        lr: f64,
    ) -> Result<()> {
        if vars.len() != grads.len() || vars.len() != self.m.len() {
            return Err(Error::Internal(format!(
                "FusedAdamW: {} vars, {} gradients, {} states",
                vars.len(),
                grads.len(),
                self.m.len()
            )));
        }
        self.t += 1;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2_sqrt = (1.0 - c.beta2.powi(self.t as i32)).sqrt();
        for ((var, g), (m, v)) in vars
            .iter()
            .zip(grads)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
        {
            let op = AdamWUpdate {
                g,
                state: Mutex::new((m, v)),
                grad_scale,
                decay: (1.0 - lr * c.weight_decay) as f32,
                b1: c.beta1 as f32,
                b2: c.beta2 as f32,
                one_minus_b1: (1.0 - c.beta1) as f32,
                one_minus_b2: (1.0 - c.beta2) as f32,
                inv_bc2: (1.0 / bc2_sqrt) as f32,
                eps: c.eps as f32,
                step_size: (lr / bc1) as f32,
            };
            var.as_tensor().inplace_op1(&op)?;
        }
        Ok(())
    }
}

/// The factor `clip_grad_norm_` scales every gradient by: `min(1, max_norm / (norm + 1e-6))`.
pub fn clip_coefficient(norm: f64, max_norm: f64) -> f64 {
    (max_norm / (norm + 1e-6)).min(1.0)
}

/// The global L2 norm of `grads` (sum of squares in f64), for clipping as
/// `torch.nn.utils.clip_grad_norm_`: the gradients are then scaled by
/// `min(1, max_norm / (norm + 1e-6))`.
pub fn global_norm(grads: &[Vec<f32>]) -> f64 {
    // Per-tensor sums in parallel, added in tensor order: the same value for any thread count.
    let mut sums = vec![0f64; grads.len()];
    let sp = OutPtr(sums.as_mut_ptr().cast());
    par_for(grads.len(), true, move |i| {
        let sp = sp;
        let s: f64 = grads[i].iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        // SAFETY: job i writes element i of `sums` only (an f64 slot).
        unsafe { *sp.0.cast::<f64>().add(i) = s };
    });
    sums.iter().sum::<f64>().sqrt()
}
