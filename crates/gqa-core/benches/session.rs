//! KV-cache decode step (`cargo bench -p gqa-core --bench session`).
//!
//! Model: embedDim 64, H = 256, 8 query / 2 KV heads, 4 layers, RoPE, `last_timestep`, B = 1.
//! The cache is filled once to 8192 positions (prefill in chunks of 512); then, at cache lengths
//! 8192, 2048 and 256 (descending, so the slot a timed push overwrites is never part of a later,
//! shorter prefix), one decode step is `Session::push` of 1 new position followed by
//! `truncate(L)` to undo it. The baseline is what a model without a cache must do for the same
//! output: `GqaModel::forward` over the whole prefix of `L + 1` positions.
//!
//! Besides criterion's report, a table of medians (own `Instant` timings) with the speedup is
//! printed. The recompute at 8192 (+1) positions needs ~7 GB of score buffers and tens of
//! seconds, so it is timed once (GQA_BENCH_SKIP_8192=1 extrapolates it instead from the 256 and
//! 2048 timings with `t(L) = a*L + c*L^2`, and says so).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use gqa_core::{GqaConfig, GqaModel, OutputMode, Session};

#[path = "../tests/common/mod.rs"]
mod common;
use common::pseudo;

const LENGTHS: [usize; 3] = [8192, 2048, 256];

fn config() -> GqaConfig {
    let mut c = GqaConfig::new(64);
    c.hidden_size = 256;
    c.num_heads = 8;
    c.num_kv_heads = 2;
    c.num_layers = 4;
    c.rope = true;
    c.output_mode = OutputMode::LastTimestep;
    c.seq_len_hint = 8192;
    c
}

fn input(n: usize) -> Vec<f32> {
    pseudo(n, 1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn decode_step(s: &mut Session, model: &GqaModel, x: &[f32], e: usize, len: usize) {
    black_box(
        s.push(model, &x[len * e..(len + 1) * e], &[1, 1, e], None, false)
            .expect("push"),
    );
    s.truncate(len);
}

/// One row of the printed table: cache length `L`, median decode step (s), median recompute
/// over `L + 1` positions (s; `None` when skipped) and the number of recompute runs.
type Row = (usize, f64, Option<f64>, usize);

fn benches(c: &mut Criterion) {
    let cfg = config();
    let model = GqaModel::new(cfg.clone()).expect("model");
    let e = cfg.embed_dim;
    let max = LENGTHS[0];
    let x = input((max + 1) * e);
    let mut s = prefill(&model, &x, e, max);
    // Sanity: the decode step equals the full forward (checked at 256, cheap).
    check_decode_matches_forward(&model, &x, e);
    let skip_8192 = std::env::var("GQA_BENCH_SKIP_8192").is_ok_and(|v| v == "1");
    let mut rows: Vec<Row> = LENGTHS
        .iter()
        .map(|&len| time_lengths(&mut s, &model, &x, e, len, skip_8192))
        .collect();
    rows.sort_by_key(|r| r.0);
    print_table(&rows);
    criterion_benches(c, &mut s, &model, &x, e);
}

/// A session of capacity `max + 1` filled with the first `max` positions of `x` (`[max+1, e]`
/// flat) in chunks of 512; prints the time taken and the KV-cache size.
fn prefill(model: &GqaModel, x: &[f32], e: usize, max: usize) -> Session {
    let mut s = model.session(1, max + 1).expect("session");
    let t0 = Instant::now();
    for start in (0..max).step_by(512) {
        s.push(
            model,
            &x[start * e..(start + 512) * e],
            &[1, 512, e],
            None,
            false,
        )
        .expect("prefill");
    }
    println!(
        "prefill of {max} positions in chunks of 512: {:.2} s; kv cache {} bytes ({} per token)",
        t0.elapsed().as_secs_f64(),
        s.kv_cache_bytes(),
        s.kv_cache_bytes_per_token()
    );
    s
}

/// Asserts that one decode step after a 256-position prefill equals the full forward over
/// 257 positions (max abs < 1e-4), and prints the difference.
fn check_decode_matches_forward(model: &GqaModel, x: &[f32], e: usize) {
    let mut s2 = model.session(1, 257).expect("session");
    s2.push(model, &x[..256 * e], &[1, 256, e], None, false)
        .expect("prefill");
    let (y, _) = s2
        .push(model, &x[256 * e..257 * e], &[1, 1, e], None, false)
        .expect("push");
    let (want, _) = model
        .forward_f32(&x[..257 * e], &[1, 257, e], None)
        .expect("forward");
    let err = y
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("decode step at 256 vs full forward over 257: max abs {err:.2e}");
    assert!(err < 1e-4);
}

/// Times cache length `len`: the median of 200 decode steps (after 20 warm-up steps) on `s`
/// truncated to `len`, and the median recompute forward over `len + 1` positions (7, 3 or 1
/// runs by length; skipped above 4096 when `skip_long`).
fn time_lengths(
    s: &mut Session,
    model: &GqaModel,
    x: &[f32],
    e: usize,
    len: usize,
    skip_long: bool,
) -> Row {
    s.truncate(len);
    for _ in 0..20 {
        decode_step(s, model, x, e, len);
    }
    let step = median(
        (0..200)
            .map(|_| {
                let t = Instant::now();
                decode_step(s, model, x, e, len);
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let n = len + 1;
    let runs = match len {
        0..=512 => 7,
        513..=4096 => 3,
        _ => 1,
    };
    let recompute = if len > 4096 && skip_long {
        None
    } else {
        Some(median(
            (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    black_box(
                        model
                            .forward_f32(&x[..n * e], &[1, n, e], None)
                            .expect("forward"),
                    );
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        ))
    };
    (len, step, recompute, runs)
}

/// Prints the table of medians and speedups of `rows` (sorted by length, the two shortest
/// measured); a skipped recompute is extrapolated by `t(L) = a*L + c*L^2` through the two
/// shortest lengths.
fn print_table(rows: &[Row]) {
    // Extrapolation t(L) = a*L + c*L^2 through the two measured shorter lengths.
    let (l1, t1) = (rows[0].0 as f64 + 1.0, rows[0].2.expect("measured"));
    let (l2, t2) = (rows[1].0 as f64 + 1.0, rows[1].2.expect("measured"));
    let cq = (t2 / l2 - t1 / l1) / (l2 - l1);
    let a = t1 / l1 - cq * l1;
    println!();
    println!("| cache length L | decode step (push 1, median) | recompute forward over L+1 (median) | speedup |");
    println!("|---:|---:|---:|---:|");
    for (len, step, recompute, runs) in rows {
        let (rc, note) = match recompute {
            Some(r) => (
                *r,
                format!("{runs} run{}", if *runs == 1 { "" } else { "s" }),
            ),
            None => {
                let l = *len as f64 + 1.0;
                (a * l + cq * l * l, "extrapolated a*L+c*L^2".to_string())
            }
        };
        println!(
            "| {len} | {:.3} ms | {:.1} ms ({note}) | {:.0}x |",
            step * 1e3,
            rc * 1e3,
            rc / step
        );
    }
    println!();
}

/// criterion's groups: `kv_decode_step` (one push at each of [`LENGTHS`]) and
/// `recompute_forward` (the full forward over 257 and 2049 positions, 10 samples).
fn criterion_benches(c: &mut Criterion, s: &mut Session, model: &GqaModel, x: &[f32], e: usize) {
    let mut g = c.benchmark_group("kv_decode_step");
    for &len in &LENGTHS {
        s.truncate(len);
        g.bench_function(format!("push1_at_{len}"), |bench| {
            bench.iter(|| decode_step(s, model, x, e, len))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("recompute_forward");
    g.sample_size(10);
    for len in [256usize, 2048] {
        let n = len + 1;
        g.bench_function(format!("forward_{n}"), |bench| {
            bench.iter(|| {
                black_box(
                    model
                        .forward_f32(&x[..n * e], &[1, n, e], None)
                        .expect("forward"),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(session, benches);
criterion_main!(session);
