//! Inference forward throughput (`cargo bench -p gqa-core --bench forward`).
//!
//! Cases: the recommended defaults (B=32, T=60, embedDim=287, H=256, 8/2 heads, 4 layers) and a
//! long context (B=1, T=2048, E=H=512, 16/4 heads, 4 layers). Throughput is reported in tokens
//! (B*T) by criterion; a GFLOP/s line is printed from the matmul FLOP count
//! `2*m*n*k` over input projection, q/k/v/out projections, FFN up/down, QK^T and PV, with the
//! attention matmuls counted in full (T*T per head: the reference kernel computes the masked
//! half too).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gqa_core::{GqaConfig, GqaModel};

#[path = "../tests/common/mod.rs"]
mod common;
use common::pseudo;

fn matmul_flops(cfg: &GqaConfig, b: usize, t: usize) -> f64 {
    let (e, h) = (cfg.embed_dim as f64, cfg.hidden_size as f64);
    let (q, kv) = (cfg.q_dim() as f64, cfg.kv_dim() as f64);
    let tokens = (b * t) as f64;
    let input = if cfg.has_input_projection() {
        2.0 * tokens * e * h
    } else {
        0.0
    };
    let proj = 2.0 * tokens * h * (q + 2.0 * kv) + 2.0 * tokens * q * h;
    let ffn = 2.0 * 2.0 * tokens * h * 4.0 * h;
    let d = cfg.head_dim() as f64;
    let attn = 2.0 * 2.0 * (b * cfg.num_heads) as f64 * (t * t) as f64 * d;
    input + cfg.num_layers as f64 * (proj + ffn + attn)
}

fn case(c: &mut Criterion, name: &str, cfg: GqaConfig, b: usize, t: usize) {
    let model = GqaModel::new(cfg.clone()).expect("model");
    let e = cfg.embed_dim;
    let x: Vec<f32> = pseudo(b * t * e, 1);
    let dims = [b, t, e];
    // One timed run for the printed GFLOP/s line (criterion reports tokens/s).
    let start = Instant::now();
    let reps = 3;
    for _ in 0..reps {
        black_box(model.forward_f32(&x, &dims, None).expect("forward"));
    }
    let secs = start.elapsed().as_secs_f64() / reps as f64;
    let flops = matmul_flops(&cfg, b, t);
    println!(
        "{name}: {:.1} ms/forward, {:.0} tokens/s, {:.2} GFLOP matmul (causal counted in full), {:.2} GFLOP/s",
        secs * 1e3,
        (b * t) as f64 / secs,
        flops / 1e9,
        flops / secs / 1e9
    );
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements((b * t) as u64));
    g.sample_size(10);
    g.bench_function(name, |bench| {
        bench.iter(|| black_box(model.forward_f32(&x, &dims, None).expect("forward")))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let defaults = GqaConfig::new(287);
    case(c, "defaults_b32_t60_h256_8x2_l4", defaults, 32, 60);
    let mut long = GqaConfig::new(512);
    long.hidden_size = 512;
    long.num_heads = 16;
    long.num_kv_heads = 4;
    long.num_layers = 4;
    long.seq_len_hint = 2048;
    case(c, "long_b1_t2048_h512_16x4_l4", long, 1, 2048);
}

criterion_group!(forward, benches);
criterion_main!(forward);
