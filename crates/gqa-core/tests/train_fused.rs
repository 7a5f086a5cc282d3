//! The fused CPU training step against candle's autograd (the reference path) on randomised
//! configurations: every gradient, the loss, dropout masks, padding, rotary/yarn, both heads,
//! both pooled output modes; and the fused trainer's determinism across runs and thread counts.
//! (`tests/train.rs` compares both paths with PyTorch fixtures.)

use candle_core::{Device, Tensor};
use gqa_core::train::{
    fused_gradients_smoothed, loss, FitOptions, HeadConfig, Labels, RegressionLoss, TaskModel,
    TrainData, TrainWorkspace, Trainer,
};
use gqa_core::{Dropout, GqaConfig, OutputMode};

mod common;
use common::{pseudo, rel_err};

struct Case {
    name: &'static str,
    embed: usize,
    hidden: usize,
    heads: usize,
    kv: usize,
    layers: usize,
    rope: bool,
    yarn: bool,
    mode: OutputMode,
    dropout: f64,
    head: HeadConfig,
    lengths: Vec<usize>,
    t: usize,
    /// Label smoothing (classification cases only).
    eps: f64,
    /// `slidingWindow`.
    window: Option<usize>,
}

/// Classification head config with `k` classes and optional class weights.
fn cls(k: usize, w: Option<Vec<f32>>) -> HeadConfig {
    HeadConfig::Classification {
        num_classes: k,
        class_weights: w,
    }
}

/// The randomised configurations, in a fixed order (a case's seed is derived from its index).
fn cases() -> Vec<Case> {
    vec![
        gqa8_2_rope_padded_weighted_cls(),
        mha_mean_pool_dropout(),
        mqa_yarn_huber(),
        gqa4_2_mse_mean_pool_rope_dropout_padded(),
        gqa4_2_last_timestep_dropout_padded_rope(),
        long_t130_gqa8_2_rope(),
        window_w40_t150_mean_pool_padded_rope(),
        window_w1_t20_last_timestep_padded(),
    ]
}

/// A sliding window of 40 keys over T = 150 (blocks before each row's window skipped), GQA
/// 8/2 with rotary, padded rows, `mean_pool`, 3 classes.
fn window_w40_t150_mean_pool_padded_rope() -> Case {
    Case {
        name: "window W=40 T=150 mean_pool padded rope",
        embed: 6,
        hidden: 32,
        heads: 8,
        kv: 2,
        layers: 2,
        rope: true,
        yarn: false,
        mode: OutputMode::MeanPool,
        dropout: 0.0,
        head: cls(3, None),
        lengths: vec![150, 97, 2],
        t: 150,
        eps: 0.0,
        window: Some(40),
    }
}

/// W = 1 (each position reads only itself), `last_timestep`, padded rows, MQA.
fn window_w1_t20_last_timestep_padded() -> Case {
    Case {
        name: "window W=1 T=20 last_timestep padded mqa",
        embed: 5,
        hidden: 16,
        heads: 4,
        kv: 1,
        layers: 2,
        rope: false,
        yarn: false,
        mode: OutputMode::LastTimestep,
        dropout: 0.0,
        head: cls(2, None),
        lengths: vec![20, 11],
        t: 20,
        eps: 0.0,
        window: Some(1),
    }
}

/// GQA 8/2 with rotary, padded rows, a class-weighted classification head (9 classes) and
/// label smoothing 0.1; `last_timestep`.
fn gqa8_2_rope_padded_weighted_cls() -> Case {
    Case {
        name: "gqa8/2 rope padded cls+weights",
        embed: 12,
        hidden: 64,
        heads: 8,
        kv: 2,
        layers: 2,
        rope: true,
        yarn: false,
        mode: OutputMode::LastTimestep,
        dropout: 0.0,
        head: cls(9, Some((0..9).map(|i| 0.5 + i as f32 * 0.1).collect())),
        lengths: vec![29, 7, 18, 1, 29],
        t: 29,
        eps: 0.1,
        window: None,
    }
}

/// MHA 4/4 without rotary, `mean_pool`, dropout 0.1, 3 classes.
fn mha_mean_pool_dropout() -> Case {
    Case {
        name: "mha mean_pool dropout",
        embed: 16,
        hidden: 16,
        heads: 4,
        kv: 4,
        layers: 2,
        rope: false,
        yarn: false,
        mode: OutputMode::MeanPool,
        dropout: 0.1,
        head: cls(3, None),
        lengths: vec![9, 4, 9],
        t: 9,
        eps: 0.0,
        window: None,
    }
}

/// MQA 4/1 with Edifice yarn at T = 70 (beyond `yarnOriginalMaxPosition` 16), a Huber
/// regression head; `last_timestep`.
fn mqa_yarn_huber() -> Case {
    Case {
        name: "mqa yarn huber",
        embed: 5,
        hidden: 32,
        heads: 4,
        kv: 1,
        layers: 1,
        rope: false,
        yarn: true,
        mode: OutputMode::LastTimestep,
        dropout: 0.0,
        head: HeadConfig::Regression {
            out_dim: 2,
            loss: RegressionLoss::Huber,
            huber_delta: 0.05,
        },
        lengths: vec![70, 70],
        t: 70,
        eps: 0.0,
        window: None,
    }
}

/// GQA 4/2, 3 layers, rotary, `mean_pool`, dropout 0.2, padded rows (one of length 1), an MSE
/// regression head.
fn gqa4_2_mse_mean_pool_rope_dropout_padded() -> Case {
    Case {
        name: "gqa4/2 mse mean_pool rope dropout padded",
        embed: 3,
        hidden: 32,
        heads: 4,
        kv: 2,
        layers: 3,
        rope: true,
        yarn: false,
        mode: OutputMode::MeanPool,
        dropout: 0.2,
        head: HeadConfig::Regression {
            out_dim: 3,
            loss: RegressionLoss::Mse,
            huber_delta: 1.0,
        },
        lengths: vec![1, 13, 40, 2],
        t: 40,
        eps: 0.0,
        window: None,
    }
}

/// GQA 4/2 with rotary, `last_timestep`, dropout 0.15, padded rows, 5 classes, label
/// smoothing 0.25.
fn gqa4_2_last_timestep_dropout_padded_rope() -> Case {
    Case {
        name: "gqa4/2 last_timestep dropout padded rope",
        embed: 6,
        hidden: 32,
        heads: 4,
        kv: 2,
        layers: 2,
        rope: true,
        yarn: false,
        mode: OutputMode::LastTimestep,
        dropout: 0.15,
        head: cls(5, None),
        lengths: vec![17, 3, 1, 12],
        t: 17,
        eps: 0.25,
        window: None,
    }
}

/// A long sequence: T = 130 (several key blocks), GQA 8/2 with rotary, 4 classes.
fn long_t130_gqa8_2_rope() -> Case {
    Case {
        name: "long T=130 gqa8/2 rope",
        embed: 8,
        hidden: 64,
        heads: 8,
        kv: 2,
        layers: 1,
        rope: true,
        yarn: false,
        mode: OutputMode::LastTimestep,
        dropout: 0.0,
        head: cls(4, None),
        lengths: vec![130, 65],
        t: 130,
        eps: 0.0,
        window: None,
    }
}

fn build(c: &Case, seed: u64) -> TaskModel {
    let mut cfg = GqaConfig::new(c.embed);
    cfg.hidden_size = c.hidden;
    cfg.num_heads = c.heads;
    cfg.num_kv_heads = c.kv;
    cfg.num_layers = c.layers;
    cfg.rope = c.rope;
    cfg.yarn = c.yarn;
    cfg.yarn_original_max_position = 16;
    cfg.output_mode = c.mode;
    cfg.dropout = c.dropout;
    cfg.seed = seed;
    cfg.sliding_window = c.window;
    TaskModel::new(cfg, Some(c.head.clone())).unwrap()
}

fn labels_for(c: &Case, seed: u64) -> Labels {
    let b = c.lengths.len();
    match &c.head {
        HeadConfig::Classification { num_classes, .. } => Labels::Classes(
            (0..b)
                .map(|i| ((i as u64 * 7 + seed) % *num_classes as u64) as u32)
                .collect(),
        ),
        HeadConfig::Regression { out_dim, .. } => Labels::Values(
            pseudo(b * out_dim, seed + 99)
                .iter()
                .map(|v| v * 2.0)
                .collect(),
        ),
    }
}

/// The candle path: loss and gradients (order of `task.vars()`).
fn candle_grads(
    task: &TaskModel,
    x: &[f32],
    c: &Case,
    labels: &Labels,
    dropout: Option<&mut Dropout>,
) -> (f64, Vec<Vec<f32>>) {
    let b = c.lengths.len();
    let xt = Tensor::from_slice(x, (b, c.t, c.embed), &Device::Cpu).unwrap();
    let out = task.head_forward(&xt, Some(&c.lengths), dropout).unwrap();
    let l = match (&c.head, labels) {
        (HeadConfig::Classification { class_weights, .. }, Labels::Classes(y)) => {
            loss::cross_entropy_smoothed(&out, y, class_weights.as_deref(), c.eps).unwrap()
        }
        (
            HeadConfig::Regression {
                loss: kind,
                huber_delta,
                out_dim,
            },
            Labels::Values(v),
        ) => {
            let tg = Tensor::from_slice(v, (b, *out_dim), &Device::Cpu).unwrap();
            match kind {
                RegressionLoss::Mse => loss::mse(&out, &tg).unwrap(),
                RegressionLoss::Huber => loss::huber(&out, &tg, *huber_delta).unwrap(),
            }
        }
        _ => unreachable!(),
    };
    let grads = l.backward().unwrap();
    let g = task
        .vars()
        .iter()
        .map(|(n, v)| {
            grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {n}"))
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect();
    (f64::from(l.to_scalar::<f32>().unwrap()), g)
}

#[test]
fn fused_gradients_match_candle_autograd() {
    for (ci, c) in cases().iter().enumerate() {
        let seed = 11 + ci as u64;
        let task = build(c, seed);
        let b = c.lengths.len();
        let mut x = pseudo(b * c.t * c.embed, seed);
        // Padded inputs must not matter.
        for (bi, &l) in c.lengths.iter().enumerate() {
            x[(bi * c.t + l) * c.embed..(bi + 1) * c.t * c.embed].fill(f32::NAN);
        }
        let labels = labels_for(c, seed);
        let mut d1 = Dropout::new(c.dropout as f32, 5).unwrap();
        let mut d2 = Dropout::new(c.dropout as f32, 5).unwrap();
        let (want_loss, want) = candle_grads(&task, &x, c, &labels, Some(&mut d1));
        let mut grads = Vec::new();
        let mut ws = TrainWorkspace::default();
        let got = fused_gradients_smoothed(
            &task,
            &x,
            c.t,
            &c.lengths,
            &labels,
            Some(&mut d2),
            &mut grads,
            &mut ws,
            c.eps,
        )
        .unwrap();
        assert!(
            (got.loss - want_loss).abs() <= 1e-5 * want_loss.abs().max(1.0),
            "{}: loss {} vs candle {}",
            c.name,
            got.loss,
            want_loss
        );
        let mut worst = (0.0, String::new());
        for ((name, _), (g, w)) in task.vars().iter().zip(grads.iter().zip(&want)) {
            assert!(
                g.iter().all(|v| v.is_finite()),
                "{}: non-finite gradient in {name}",
                c.name
            );
            let e = rel_err(g, w);
            let scale = w.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            let tol = if scale < 1e-6 { 1e-6 } else { 1e-4 };
            assert!(
                e <= tol,
                "{}: gradient of {name} differs from candle by {e:e} (max |ref| {scale:e})",
                c.name
            );
            if e > worst.0 {
                worst = (e, name.clone());
            }
        }
        // Both generators drew the same number of values: the next draws agree.
        let mut m1 = vec![0f32; 64];
        let mut m2 = vec![0f32; 64];
        assert_eq!(d1.fill_mask(&mut m1), d2.fill_mask(&mut m2));
        assert_eq!(m1, m2, "{}: dropout streams diverged", c.name);
        eprintln!(
            "{}: loss {:.6} (candle {:.6}); worst relative gradient error {:.2e} at {}",
            c.name, got.loss, want_loss, worst.0, worst.1
        );
    }
}

fn fit_losses(threads: usize) -> Vec<f64> {
    gqa_core::kernels::threads::set_threads(threads).unwrap();
    let c = &cases()[0];
    let task = build(c, 3);
    let n = 40;
    let t = 20;
    let x = pseudo(n * t * c.embed, 8);
    let lengths: Vec<usize> = (0..n).map(|i| 1 + (i * 7) % t).collect();
    let labels = Labels::Classes((0..n).map(|i| (i % 9) as u32).collect());
    let data = TrainData::new(x, &[n, t, c.embed], Some(lengths), labels).unwrap();
    let opts = FitOptions {
        epochs: 2,
        batch_size: 16,
        lr: 3e-3,
        ..FitOptions::default()
    };
    let mut tr = Trainer::new(&task, data, opts).unwrap();
    let mut losses = Vec::new();
    while !tr.done() {
        let r = tr.step(&task).unwrap();
        losses.push(r.loss);
        losses.push(
            r.grad_norm
                .expect("clipping is on by default, so the norm is reported"),
        );
    }
    losses
}

#[test]
fn fused_training_is_bitwise_reproducible_across_runs_and_thread_counts() {
    let a = fit_losses(1);
    let b = fit_losses(1);
    let c = fit_losses(2);
    assert_eq!(a, b, "same seed, same loss curve");
    assert_eq!(a, c, "1 and 2 threads give the same loss curve");
    assert!(a[0] > a[a.len() - 2], "loss decreases: {a:?}");
}
