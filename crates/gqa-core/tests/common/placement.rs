#![allow(dead_code)]

//! Checks of a model placed on a device ([`gqa_core::Placement`]) against the same weights on
//! the CPU in f32 (the fused kernels): forwards of every output mode with rotary and padding,
//! sessions against full forwards on the device, and a training run's loss curve. Shared by
//! `tests/placement.rs` (the CPU in bf16, run by CI) and `tests/cuda.rs` (a GPU, feature `cuda`,
//! run by `scripts/gpu-check.sh` on a GPU machine).

use gqa_core::train::{FitOptions, HeadConfig, Labels, TaskModel, TrainData, Trainer};
use std::path::PathBuf;

use gqa_core::{
    read_tensors, GqaAttention, GqaConfig, GqaModel, LoadOptions, OutputMode, Placement,
};

use crate::common::pseudo;

/// The largest |a - b| over the largest |b| (0 for an all-zero `b`).
pub fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "output lengths");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30) as f64;
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) as f64;
    diff / scale
}

/// GQA 8/2, 2 layers, hidden 64, rotary (YaRN when `yarn`), `mode`.
pub fn config(mode: OutputMode, yarn: bool) -> GqaConfig {
    let mut c = GqaConfig::new(12);
    c.hidden_size = 64;
    c.num_heads = 8;
    c.num_kv_heads = 2;
    c.num_layers = 2;
    c.output_mode = mode;
    c.rope = !yarn;
    if yarn {
        c.yarn = true;
        c.yarn_scale = 4.0;
        c.yarn_original_max_position = 16;
    }
    c.seed = 5;
    c
}

/// Forward outputs of `placement` against the CPU f32 model: every output mode, rotary and
/// YaRN, a padded batch. Returns the worst relative error; panics above `tol`.
pub fn check_forward(placement: &Placement, tol: f64) -> f64 {
    let (b, t, e) = (3, 37, 12);
    let x = pseudo(b * t * e, 17);
    let lengths = [37, 20, 1];
    let mut worst = 0f64;
    for mode in [
        OutputMode::LastTimestep,
        OutputMode::MeanPool,
        OutputMode::All,
    ] {
        for yarn in [false, true] {
            let cpu = GqaModel::new(config(mode, yarn)).unwrap();
            let dev = cpu.placed(placement).unwrap();
            for lens in [None, Some(&lengths[..])] {
                let (want, wd) = cpu.forward_f32(&x, &[b, t, e], lens).unwrap();
                let (got, gd) = dev.forward_f32(&x, &[b, t, e], lens).unwrap();
                assert_eq!(gd, wd, "dims");
                let err = max_rel(&got, &want);
                let what = format!("{mode:?} yarn={yarn} padded={}", lens.is_some());
                assert!(
                    err <= tol,
                    "{}: forward {what}: rel err {err:.3e} > {tol:e}",
                    placement.describe()
                );
                worst = worst.max(err);
            }
        }
    }
    worst
}

/// Positions `from..to` of every row of `x: [B, T, E]`, as `[B, to - from, E]`.
fn positions(x: &[f32], [b, t, e]: [usize; 3], from: usize, to: usize) -> Vec<f32> {
    (0..b)
        .flat_map(|r| x[(r * t + from) * e..(r * t + to) * e].iter().copied())
        .collect()
}

/// Sessions on `placement` (prefill of 9 positions, then decode steps of 1, then a chunk of 6)
/// against the full forward over each prefix on the same placement. Returns the worst error.
pub fn check_session(placement: &Placement, tol: f64) -> f64 {
    let (b, t, e) = (2, 20, 12);
    let x = pseudo(b * t * e, 23);
    let model = GqaModel::new(config(OutputMode::LastTimestep, false))
        .unwrap()
        .placed(placement)
        .unwrap();
    let mut session = model.session(b, t).unwrap();
    let mut worst = 0f64;
    let mut at = 0;
    for len in [9, 1, 1, 1, 1, 1, 6] {
        let chunk = positions(&x, [b, t, e], at, at + len);
        let (got, _) = session
            .push(&model, &chunk, &[b, len, e], None, false)
            .unwrap();
        at += len;
        let prefix = positions(&x, [b, t, e], 0, at);
        let (want, _) = model.forward_f32(&prefix, &[b, at, e], None).unwrap();
        let err = max_rel(&got, &want);
        assert!(
            err <= tol,
            "{}: session after {at} positions: rel err {err:.3e} > {tol:e}",
            placement.describe()
        );
        worst = worst.max(err);
    }
    worst
}

/// `steps` training steps (classification, AdamW, batch 8 of 32 sequences) on `placement` and
/// on the CPU from the same weights: the loss curves agree within `tol` relative at each step.
/// Returns the worst relative difference.
pub fn check_training(placement: &Placement, steps: usize, tol: f64) -> f64 {
    let (n, t, e, k) = (32, 16, 12, 4);
    let x = pseudo(n * t * e, 29);
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % k as u32).collect();
    let head = HeadConfig::Classification {
        num_classes: k,
        class_weights: None,
    };
    let cpu = TaskModel::new(config(OutputMode::MeanPool, false), Some(head)).unwrap();
    let dev = cpu.placed(placement).unwrap();
    let opts = FitOptions {
        epochs: steps.div_ceil(n / 8),
        batch_size: 8,
        lr: 3e-3,
        ..FitOptions::default()
    };
    let data =
        || TrainData::new(x.clone(), &[n, t, e], None, Labels::Classes(labels.clone())).unwrap();
    // A copy of the CPU weights for the CPU run (placing on the CPU in f32 shares them).
    let cpu =
        TaskModel::from_safetensors(&cpu.to_safetensors().unwrap(), &Default::default()).unwrap();
    let mut tc = Trainer::new(&cpu, data(), opts.clone()).unwrap();
    let mut td = Trainer::new(&dev, data(), opts).unwrap();
    let mut worst = 0f64;
    for s in 0..steps {
        let a = tc.step(&cpu).unwrap().loss;
        let b = td.step(&dev).unwrap().loss;
        let rel = (a - b).abs() / a.abs().max(1e-12);
        assert!(
            rel <= tol,
            "{}: step {s}: loss {b} vs CPU {a} (rel {rel:.3e} > {tol:e})",
            placement.describe()
        );
        worst = worst.max(rel);
    }
    worst
}

/// `fixtures/` (the PyTorch reference outputs of `scripts/gen_fixtures.py`): `GQA_FIXTURES_DIR`
/// when set (a test executable run from another checkout, as on the GPU machine), else the
/// source tree's.
pub fn fixture_dir() -> PathBuf {
    match std::env::var_os("GQA_FIXTURES_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
    }
}

/// The `kind` of a fixture's `gqa_fixture` metadata (`model`, `attention`, ...).
pub fn fixture_kind(meta: &std::collections::HashMap<String, String>) -> String {
    let fx: serde_json::Value =
        serde_json::from_str(meta.get("gqa_fixture").expect("gqa_fixture metadata")).unwrap();
    fx["kind"].as_str().unwrap().to_string()
}

/// Every `fixtures/*.safetensors` of kind `model` or `attention`, loaded through the library's
/// own loader (non-strict: the `input.*` / `expected.*` tensors are ignored), placed on
/// `placement`, run on `input.x` / `input.lengths` and compared with `expected.out` (float64
/// PyTorch): max abs error <= `abs + rel * max|expected|`, outputs finite. Returns (fixtures
/// checked, worst max abs error over max|expected|).
pub fn check_fixtures(placement: &Placement, abs: f32, rel: f32) -> (usize, f32) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixtures/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    let (mut checked, mut worst) = (0, 0f32);
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let (tensors, meta) = read_tensors(&bytes).unwrap();
        let kind = fixture_kind(&meta);
        if kind != "model" && kind != "attention" {
            continue;
        }
        let get = |n: &str| tensors.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone());
        let x = get("input.x").expect("input.x");
        let dims = x.dims().to_vec();
        let data = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let lengths: Option<Vec<usize>> = get("input.lengths").map(|t| {
            t.to_vec1::<i64>()
                .unwrap()
                .into_iter()
                .map(|l| l as usize)
                .collect()
        });
        let expected = get("expected.out").expect("expected.out");
        let opts = LoadOptions::default();
        let (out, out_dims) = if kind == "model" {
            let model = GqaModel::from_safetensors(&bytes, &opts)
                .unwrap()
                .placed(placement)
                .unwrap();
            model.forward_f32(&data, &dims, lengths.as_deref()).unwrap()
        } else {
            let layer = GqaAttention::from_safetensors(&bytes, None, &opts)
                .unwrap()
                .placed(placement)
                .unwrap();
            layer.forward_f32(&data, &dims, lengths.as_deref()).unwrap()
        };
        let name = path.file_name().unwrap().to_string_lossy();
        assert_eq!(out_dims, expected.dims(), "{name}: output dims");
        assert!(
            out.iter().all(|v| v.is_finite()),
            "{name}: non-finite output"
        );
        let want = expected.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let err = crate::common::max_abs_diff(&out, &want);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let tol = abs + rel * scale;
        println!(
            "{name:<28} {kind:<9} {} max_abs_err = {err:.3e} (max |out| {scale:.2})",
            placement.describe()
        );
        assert!(
            err <= tol,
            "{name} on {}: max abs error {err:e} > {tol:e}",
            placement.describe()
        );
        (checked, worst) = (checked + 1, worst.max(err / scale.max(1e-30)));
    }
    (checked, worst)
}
