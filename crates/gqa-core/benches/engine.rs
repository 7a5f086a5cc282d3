//! Inference forward of the issue workloads on the fused engine, at 1 and 2 threads (or the
//! counts in `ENGINE_THREADS`, comma-separated): median ms, GFLOP/s (PEERS.md formula: full
//! T x T score and value products), the SIMD paths that ran.
//!
//! `cargo bench -p gqa-core --bench engine -- [reps]` (`ENGINE_CASES=a,a_all,b2048,b4096`).
//! Long context: `ENGINE_CASES=long32768` (forward then a one-chunk session prefill of 32,768
//! positions, B=1, H=512, 16/4 heads, 1 layer, printing the peak RSS);
//! `ENGINE_CASES=decode` (one-position session pushes at cache length 2k/8k/32k against the
//! time to read the KV cache once, from a measured copy bandwidth).
use std::hint::black_box;
use std::time::Instant;

use gqa_core::kernels::{cpu, gemm, threads};
use gqa_core::{GqaConfig, GqaModel, OutputMode};

#[path = "../tests/common/mod.rs"]
mod common;
use common::pseudo;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn flops(c: &GqaConfig, b: usize, t: usize) -> f64 {
    let (e, h, nh, nkv, d, l) = (
        c.embed_dim,
        c.hidden_size,
        c.num_heads,
        c.num_kv_heads,
        c.head_dim(),
        c.num_layers,
    );
    let (b, t) = (b as f64, t as f64);
    let proj = if e != h { (e * h) as f64 } else { 0.0 };
    2.0 * b * t * (proj + l as f64 * ((h * nh * d * 2 + 2 * h * nkv * d + 8 * h * h) as f64))
        + l as f64 * 4.0 * b * nh as f64 * t * t * d as f64
}

fn main() {
    let reps: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(7);
    let cases = std::env::var("ENGINE_CASES").unwrap_or_else(|_| "a,a_all,b2048,b4096".into());
    let ths: Vec<usize> = std::env::var("ENGINE_THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    println!(
        "simd: kernels {}, gemm {}",
        cpu::simd_name(),
        gemm::gemm_path()
    );
    // GEMM peak of the gemm crate on this machine: x [n, n] times W^T [n, n].
    let n = 2048;
    let a: Vec<f32> = pseudo(n * n, 2);
    let mut y = vec![0f32; n * n];
    for &th in &ths {
        threads::set_threads(th).expect("threads");
        let mut ts = Vec::new();
        for _ in 0..5 {
            let s = Instant::now();
            threads::install(|| gemm::linear(n, n, n, &a, n, &a, &mut y, n, false).expect("gemm"));
            ts.push(s.elapsed().as_secs_f64());
        }
        println!(
            "gemm {n}^3 threads {th}: {:.1} GFLOP/s",
            2.0 * (n * n * n) as f64 / median(&mut ts) / 1e9
        );
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
            "long32768" => {
                long_context(32_768);
                continue;
            }
            "decode" => {
                decode(reps);
                continue;
            }
            _ => continue,
        };
        let model = GqaModel::new(cfg.clone()).expect("model");
        let x: Vec<f32> = pseudo(b * t * cfg.embed_dim, 1);
        let fl = flops(&cfg, b, t);
        for &n in &ths {
            threads::set_threads(n).expect("threads");
            black_box(
                model
                    .forward_f32(&x, &[b, t, cfg.embed_dim], None)
                    .expect("forward"),
            );
            let mut ts = Vec::new();
            for _ in 0..reps {
                let s = Instant::now();
                black_box(
                    model
                        .forward_f32(&x, &[b, t, cfg.embed_dim], None)
                        .expect("forward"),
                );
                ts.push(s.elapsed().as_secs_f64() * 1e3);
            }
            let m = median(&mut ts);
            println!(
                "{name:>6} threads {n}: median {m:8.2} ms  {:6.1} GFLOP/s",
                fl / m / 1e6
            );
        }
    }
}

fn b_config(layers: usize) -> GqaConfig {
    let mut c = GqaConfig::new(512);
    c.hidden_size = 512;
    c.num_heads = 16;
    c.num_kv_heads = 4;
    c.num_layers = layers;
    c.rope = true;
    c.output_mode = OutputMode::All;
    c
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn long_context(t: usize) {
    let cfg = b_config(1);
    let model = GqaModel::new(cfg.clone()).expect("model");
    let x: Vec<f32> = pseudo(t * 512, 1);
    println!(
        "long context T={t}: input {:.0} MiB, peak RSS before {:.0} MiB",
        (t * 512 * 4) as f64 / 1048576.0,
        peak_rss_mib()
    );
    let s = Instant::now();
    let (y, dims) = model.forward_f32(&x, &[1, t, 512], None).expect("forward");
    println!(
        "  forward (rope, all): {:.2} s, output {dims:?}, finite {}, peak RSS {:.0} MiB",
        s.elapsed().as_secs_f64(),
        y.iter().all(|v| v.is_finite()),
        peak_rss_mib()
    );
    let mut sess = model.session(1, t).expect("session");
    let s = Instant::now();
    let (z, _) = sess
        .push(&model, &x, &[1, t, 512], None, true)
        .expect("prefill");
    let diff = y
        .iter()
        .zip(&z)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!(
        "  session prefill of {t} positions (one chunk): {:.2} s, KV cache {:.0} MiB, max |prefill - forward| {diff:.2e}, peak RSS {:.0} MiB",
        s.elapsed().as_secs_f64(),
        sess.kv_cache_bytes() as f64 / 1048576.0,
        peak_rss_mib()
    );
}

fn decode(reps: usize) {
    // Copy bandwidth: 1 GiB read + 1 GiB written.
    let n = 1 << 28;
    let src = vec![1f32; n];
    let mut dst = vec![0f32; n];
    let mut ts = Vec::new();
    for _ in 0..3 {
        let s = Instant::now();
        dst.copy_from_slice(black_box(&src));
        ts.push(s.elapsed().as_secs_f64());
    }
    black_box(&dst);
    let read_bw = (n * 4) as f64 / median(&mut ts); // bytes read per second (a copy also writes as much)
    drop((src, dst));
    println!("memory: copy of 1 GiB reads at {:.1} GB/s", read_bw / 1e9);
    let cfg = b_config(4);
    let model = GqaModel::new(cfg.clone()).expect("model");
    let max = 32_768 + 1;
    let mut sess = model.session(1, max).expect("session");
    let chunk = 4096;
    let x: Vec<f32> = pseudo(chunk * 512, 1);
    let weights = model.params().total_elements() as f64 * 4.0;
    let mut filled = 0;
    for &l in &[2048usize, 8192, 32_768] {
        while filled < l {
            let c = chunk.min(l - filled);
            sess.push(&model, &x[..c * 512], &[1, c, 512], None, false)
                .expect("prefill");
            filled += c;
        }
        let one = &x[..512];
        let mut ts = Vec::new();
        for _ in 0..reps.max(20) {
            let s = Instant::now();
            black_box(
                sess.push(&model, one, &[1, 1, 512], None, false)
                    .expect("decode"),
            );
            ts.push(s.elapsed().as_secs_f64());
            sess.truncate(l);
        }
        let step = median(&mut ts);
        let kv = (l as u64 * cfg.kv_cache_bytes_per_token()) as f64;
        println!(
            "decode at L={l:>6} (H 512, 16/4 heads, 4 layers): {:.3} ms; KV read limit {:.3} ms ({:.1} MiB), KV + weights limit {:.3} ms; step / KV limit {:.2}x",
            step * 1e3,
            kv / read_bw * 1e3,
            kv / 1048576.0,
            (kv + weights) / read_bw * 1e3,
            step / (kv / read_bw)
        );
    }
}
