//! Inference forward of the issue workloads on the fused engine, at 1 and 2 threads (or the
//! counts in `ENGINE_THREADS`, comma-separated): median ms, GFLOP/s (PEERS.md formula: full
//! T x T score and value products), the SIMD paths that ran.
//!
//! `cargo bench -p gqa-core --bench engine -- [reps]` (`ENGINE_CASES=a,a_all,b2048,b4096`).
use std::hint::black_box;
use std::time::Instant;

use gqa_core::kernels::{cpu, gemm, threads};
use gqa_core::{GqaConfig, GqaModel, OutputMode};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn flops(c: &GqaConfig, b: usize, t: usize) -> f64 {
    let (e, h, nh, nkv, d, l) = (c.embed_dim, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim(), c.num_layers);
    let (b, t) = (b as f64, t as f64);
    let proj = if e != h { (e * h) as f64 } else { 0.0 };
    2.0 * b * t * (proj + l as f64 * ((h * nh * d * 2 + 2 * h * nkv * d + 8 * h * h) as f64)) + l as f64 * 4.0 * b * nh as f64 * t * t * d as f64
}

fn main() {
    let reps: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(7);
    let cases = std::env::var("ENGINE_CASES").unwrap_or_else(|_| "a,a_all,b2048,b4096".into());
    let ths: Vec<usize> = std::env::var("ENGINE_THREADS").unwrap_or_else(|_| "1,2".into()).split(',').filter_map(|s| s.parse().ok()).collect();
    println!("simd: kernels {}, gemm {}", cpu::simd_name(), gemm::gemm_path());
    // GEMM peak of the gemm crate on this machine: x [n, n] times W^T [n, n].
    let n = 2048;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let mut y = vec![0f32; n * n];
    for &th in &ths {
        threads::set_threads(th).expect("threads");
        let mut ts = Vec::new();
        for _ in 0..5 {
            let s = Instant::now();
            threads::install(|| gemm::linear(n, n, n, &a, n, &a, &mut y, n, false).expect("gemm"));
            ts.push(s.elapsed().as_secs_f64());
        }
        println!("gemm {n}^3 threads {th}: {:.1} GFLOP/s", 2.0 * (n * n * n) as f64 / median(&mut ts) / 1e9);
    }
    for name in cases.split(',') {
        let (cfg, b, t) = match name {
            "a" | "a_all" => {
                let mut c = GqaConfig::new(287);
                if name == "a_all" {
                    c.output_mode = OutputMode::All;
                }
                (c, 32, 60)
            }
            n if n.starts_with('b') => {
                let t: usize = n[1..].parse().expect("b<T>");
                let mut c = GqaConfig::new(512);
                c.hidden_size = 512;
                c.num_heads = 16;
                c.num_kv_heads = 4;
                c.num_layers = 1;
                c.output_mode = OutputMode::All;
                (c, 1, t)
            }
            _ => continue,
        };
        let model = GqaModel::new(cfg.clone()).expect("model");
        let x: Vec<f32> = (0..b * t * cfg.embed_dim).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
        let fl = flops(&cfg, b, t);
        for &n in &ths {
            threads::set_threads(n).expect("threads");
            black_box(model.forward_f32(&x, &[b, t, cfg.embed_dim], None).expect("forward"));
            let mut ts = Vec::new();
            for _ in 0..reps {
                let s = Instant::now();
                black_box(model.forward_f32(&x, &[b, t, cfg.embed_dim], None).expect("forward"));
                ts.push(s.elapsed().as_secs_f64() * 1e3);
            }
            let m = median(&mut ts);
            println!("{name:>6} threads {n}: median {m:8.2} ms  {:6.1} GFLOP/s", fl / m / 1e6);
        }
    }
}
