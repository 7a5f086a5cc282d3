//! One optimisation step (forward, loss, backward, clipping, AdamW) on the fused CPU training
//! path against candle's autograd path (the reference), same process, interleaved rounds,
//! median of `TRAIN_REPS` steps per round (default 10) over `TRAIN_ROUNDS` rounds (default 3).
//!
//! Cases (`TRAIN_CASES`, comma-separated; default both):
//! - `a`: workload (a) of the benchmarks: B=32, T=60, E=287, H=256, 8/2 heads, 4 layers,
//!   dropout 0, 9-class head, last timestep.
//! - `main`: the main job's model (`npm run main`): B=32, T=29 (lengths 7..29), E=12, H=64,
//!   4/2 heads, 2 layers, rotary, dropout 0.1, 9-class head.
//!
//! `TRAIN_FUSED_ONLY=1` skips the reference (for profiling). `TRAIN_THREADS` sets the thread count (default: gqa's default). Prints the CPU's SIMD path.
//! Run: `cargo bench -p gqa-core --bench train`.

use std::time::Instant;

use gqa_core::kernels::{cpu, gemm, set_reference_kernels, threads};
use gqa_core::train::{FitOptions, HeadConfig, Labels, TaskModel, TrainData, Trainer};
use gqa_core::GqaConfig;

#[path = "../tests/common/mod.rs"]
mod common;
use common::pseudo;

struct Case {
    name: &'static str,
    cfg: GqaConfig,
    b: usize,
    t: usize,
    lengths: Vec<usize>,
}

fn case(name: &str) -> Case {
    match name {
        "a" => {
            let mut cfg = GqaConfig::new(287);
            cfg.dropout = 0.0;
            Case {
                name: "a",
                cfg,
                b: 32,
                t: 60,
                lengths: vec![60; 32],
            }
        }
        "main" => {
            let mut cfg = GqaConfig::new(12);
            cfg.hidden_size = 64;
            cfg.num_heads = 4;
            cfg.num_kv_heads = 2;
            cfg.num_layers = 2;
            cfg.rope = true;
            cfg.dropout = 0.1;
            Case {
                name: "main",
                cfg,
                b: 32,
                t: 29,
                lengths: (0..32).map(|i| 7 + (i * 5) % 23).collect(),
            }
        }
        other => panic!("unknown TRAIN_CASES entry {other:?} (a, main)"),
    }
}

fn trainer(c: &Case, task: &TaskModel, steps: usize, reference: bool) -> Trainer {
    set_reference_kernels(reference);
    let e = c.cfg.embed_dim;
    // `steps` one-batch epochs: every step sees the same batch.
    let data = TrainData::new(
        pseudo(c.b * c.t * e, 1),
        &[c.b, c.t, e],
        Some(c.lengths.clone()),
        Labels::Classes((0..c.b).map(|i| (i % 9) as u32).collect()),
    )
    .unwrap();
    let opts = FitOptions {
        epochs: steps,
        batch_size: c.b,
        lr: 1e-3,
        min_lr: 1e-3,
        warmup_ratio: 0.0,
        shuffle: false,
        ..FitOptions::default()
    };
    let tr = Trainer::new(task, data, opts).unwrap();
    set_reference_kernels(false);
    tr
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Some(n) = std::env::var("TRAIN_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        threads::set_threads(n).unwrap();
    }
    let reps: usize = std::env::var("TRAIN_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rounds: usize = std::env::var("TRAIN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let fused_only = std::env::var("TRAIN_FUSED_ONLY").is_ok_and(|v| v == "1");
    let cases = std::env::var("TRAIN_CASES").unwrap_or_else(|_| "a,main".into());
    println!(
        "threads {}, kernels {}, gemm {}",
        threads::threads(),
        cpu::simd_name(),
        gemm::gemm_path()
    );
    for name in cases.split(',') {
        let c = case(name.trim());
        let head = Some(HeadConfig::Classification {
            num_classes: 9,
            class_weights: None,
        });
        let fused_model = TaskModel::new(c.cfg.clone(), head.clone()).unwrap();
        let mut ref_model = TaskModel::new(c.cfg.clone(), head).unwrap();
        ref_model.model = ref_model
            .model
            .with_engine(gqa_core::compute::Engine::Reference(
                gqa_core::candle_core::Device::Cpu,
            ))
            .unwrap();
        let mut fused = trainer(&c, &fused_model, rounds * reps + 1, false);
        let mut reference = trainer(&c, &ref_model, rounds * reps + 1, true);
        fused.step(&fused_model).unwrap();
        if !fused_only {
            reference.step(&ref_model).unwrap();
        }
        let (mut tf, mut tr) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (tr_, model, times) in [
                (&mut fused, &fused_model, &mut tf),
                (&mut reference, &ref_model, &mut tr),
            ] {
                if fused_only && std::ptr::eq(model, &ref_model) {
                    times.push(f64::NAN);
                    continue;
                }
                for _ in 0..reps {
                    let t0 = Instant::now();
                    tr_.step(model).unwrap();
                    times.push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        let (f, r) = (median(tf), median(tr));
        println!("{:>5}: fused {f:8.2} ms/step | candle autograd {r:8.2} ms/step | fused speed-up {:.2}x", c.name, r / f);
    }
}
