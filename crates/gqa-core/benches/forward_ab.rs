//! A/B timing of the inference forward: reference candle ops vs fused CPU kernels, alternating
//! run by run in one process so both see the same machine load
//! (`cargo bench -p gqa-core --bench forward_ab [-- REPS]`). Prints min and median per case.
//! Same cases as `benches/forward.rs`. `AB_CASE=defaults|long` runs one case, `AB_FUSED_ONLY=1`
//! only the fused kernels (for profiling).

use std::hint::black_box;
use std::time::Instant;

use gqa_core::candle_core::Device;
use gqa_core::compute::Engine;
use gqa_core::{GqaConfig, GqaModel};

#[path = "../tests/common/mod.rs"]
mod common;
use common::pseudo;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn case(name: &str, cfg: GqaConfig, b: usize, t: usize, reps: usize) {
    let model = GqaModel::new(cfg.clone()).expect("model");
    let models = [
        model
            .with_engine(Engine::Reference(Device::Cpu))
            .expect("reference model"),
        model,
    ];
    let e = cfg.embed_dim;
    let x: Vec<f32> = pseudo(b * t * e, 1);
    let dims = [b, t, e];
    let mut times = [Vec::new(), Vec::new()];
    let mut outs: [Vec<f32>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..reps {
        for (i, reference) in [true, false].into_iter().enumerate() {
            if std::env::var("AB_FUSED_ONLY").is_ok() && reference {
                continue;
            }
            let start = Instant::now();
            let (y, _) = black_box(models[i].forward_f32(&x, &dims, None).expect("forward"));
            times[i].push(start.elapsed().as_secs_f64() * 1e3);
            outs[i] = y;
        }
    }
    if times[0].is_empty() {
        let fmed = median(&mut times[1]);
        println!("{name}: fused median {fmed:.1} ms");
        return;
    }
    let diff = outs[0]
        .iter()
        .zip(&outs[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let (rmin, fmin) = (
        times[0].iter().copied().fold(f64::INFINITY, f64::min),
        times[1].iter().copied().fold(f64::INFINITY, f64::min),
    );
    let (rmed, fmed) = (median(&mut times[0]), median(&mut times[1]));
    let tokens = (b * t) as f64;
    println!(
        "{name}: reference median {rmed:.1} ms (min {rmin:.1}), fused median {fmed:.1} ms (min {fmin:.1}); \
         {:.0} -> {:.0} tokens/s; speed-up x{:.2} (median); max abs diff {diff:.2e}",
        tokens / rmed * 1e3,
        tokens / fmed * 1e3,
        rmed / fmed
    );
}

fn main() {
    let reps: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let only = std::env::var("AB_CASE").unwrap_or_default();
    if only.is_empty() || only == "defaults" {
        case(
            "defaults_b32_t60_h256_8x2_l4",
            GqaConfig::new(287),
            32,
            60,
            reps,
        );
    }
    if !(only.is_empty() || only == "long") {
        return;
    }
    let mut long = GqaConfig::new(512);
    long.hidden_size = 512;
    long.num_heads = 16;
    long.num_kv_heads = 4;
    long.num_layers = 4;
    long.seq_len_hint = 2048;
    case(
        "long_b1_t2048_h512_16x4_l4",
        long,
        1,
        2048,
        reps.div_ceil(2).max(2),
    );
}
