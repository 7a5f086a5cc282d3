//! KV-cache sessions (SPEC section 4): chunked pushes equal the full forward over the prefix,
//! per-row lengths, unused slots never read, cache size formula, CacheFull, input errors.

use gqa_core::kernels::set_reference_kernels;
use gqa_core::{Error, GqaConfig, GqaModel, OutputMode, Session};

mod common;
use common::pseudo;

const TOL: f32 = 1e-5;

#[derive(Clone, Copy, Debug)]
enum Rot {
    None,
    Rope,
    Yarn,
}

fn cfg(rot: Rot, nh: usize, nkv: usize, mode: OutputMode, embed: usize) -> GqaConfig {
    let mut c = GqaConfig::new(embed);
    c.hidden_size = 32; // headDim = 32 / nh
    c.num_heads = nh;
    c.num_kv_heads = nkv;
    c.num_layers = 2;
    c.output_mode = mode;
    c.seed = 11;
    match rot {
        Rot::None => {}
        Rot::Rope => c.rope = true,
        Rot::Yarn => {
            // headDim 8: wavelengths 2*pi, 62.8, 628, 6283; orig 16 puts 2*pi inside the ramp
            // (highWav 4 .. lowWav 16) and scales the rest by 1/yarnScale.
            c.yarn = true;
            c.yarn_scale = 4.0;
            c.yarn_original_max_position = 16;
        }
    }
    c
}

/// Rows `0..b` of `x: [B, T, E]`, positions `from..to`, as `[b, to-from, E]`.
fn slice(
    x: &[f32],
    t: usize,
    e: usize,
    rows: std::ops::Range<usize>,
    from: usize,
    to: usize,
) -> Vec<f32> {
    let mut out = Vec::new();
    for r in rows {
        out.extend_from_slice(&x[(r * t + from) * e..(r * t + to) * e]);
    }
    out
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(
            0.0,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        )
}

/// Full forwards over every prefix `x[:, 0:p]`, `p = 1..=T` (index `p`).
fn prefix_refs(model: &GqaModel, x: &[f32], b: usize, t: usize, e: usize) -> Vec<Vec<f32>> {
    let mut refs = vec![Vec::new()];
    for p in 1..=t {
        let (y, _) = model
            .forward_f32(&slice(x, t, e, 0..b, 0, p), &[b, p, e], None)
            .unwrap();
        refs.push(y);
    }
    refs
}

/// Expected per-position output `[b, i]` of a push covering positions `start..end`.
fn expected_position(
    mode: OutputMode,
    refs: &[Vec<f32>],
    row: usize,
    pos: usize,
    h: usize,
) -> Vec<f32> {
    match mode {
        // The hidden state at `pos`: last row of the forward over the prefix ending there.
        OutputMode::LastTimestep | OutputMode::MeanPool => {
            refs[pos + 1][row * h..(row + 1) * h].to_vec()
        }
        OutputMode::All => {
            let p = pos + 1;
            refs[p][(row * p + pos) * h..(row * p + pos + 1) * h].to_vec()
        }
    }
}

fn patterns() -> Vec<(&'static str, Vec<usize>)> {
    let mut cyc = Vec::new();
    let mut total = 0;
    for c in [3usize, 2, 1].iter().cycle() {
        let c = (*c).min(64 - total);
        cyc.push(c);
        total += c;
        if total == 64 {
            break;
        }
    }
    vec![
        ("1+1+...", vec![1; 64]),
        ("3+2+1+...", cyc),
        ("7+57", vec![7, 57]),
        ("64", vec![64]),
    ]
}

/// Both attention paths of a session: the fused CPU kernel (default) and the candle ops
/// (`GQA_REFERENCE_KERNELS=1`, other devices). The switch is process-wide; every test in this
/// file is valid on either path.
fn on_both_kernel_paths(f: impl Fn(&str)) {
    for reference in [false, true] {
        set_reference_kernels(reference);
        f(if reference {
            "reference kernels"
        } else {
            "fused kernels"
        });
    }
    set_reference_kernels(false);
}

#[test]
fn chunked_pushes_equal_full_forward_over_prefix() {
    on_both_kernel_paths(chunked_pushes);
}

fn chunked_pushes(path: &str) {
    let (b, t) = (2, 64);
    let mut worst = 0f32;
    for rot in [Rot::None, Rot::Rope, Rot::Yarn] {
        for (nh, nkv) in [(4, 2), (4, 1), (4, 4)] {
            for mode in [
                OutputMode::LastTimestep,
                OutputMode::MeanPool,
                OutputMode::All,
            ] {
                // E != H (input projection) for GQA, E == H otherwise.
                let e = if nkv == 2 { 6 } else { 32 };
                let c = cfg(rot, nh, nkv, mode, e);
                let model = GqaModel::new(c.clone()).unwrap();
                let h = c.hidden_size;
                let x = pseudo(b * t * e, 5);
                let refs = prefix_refs(&model, &x, b, t, e);
                let mut case_worst = 0f32;
                for (name, pat) in patterns() {
                    for all_positions in [false, true] {
                        let mut s = model.session(b, t).unwrap();
                        let mut start = 0;
                        for &n in &pat {
                            let end = start + n;
                            s.poison_unused().unwrap();
                            let (y, dims) = s
                                .push(
                                    &model,
                                    &slice(&x, t, e, 0..b, start, end),
                                    &[b, n, e],
                                    None,
                                    all_positions,
                                )
                                .unwrap();
                            let err = if all_positions || mode == OutputMode::All {
                                assert_eq!(dims, vec![b, n, h]);
                                let mut want = Vec::new();
                                for row in 0..b {
                                    for pos in start..end {
                                        want.extend(expected_position(mode, &refs, row, pos, h));
                                    }
                                }
                                max_abs(&y, &want)
                            } else {
                                assert_eq!(dims, vec![b, h]);
                                max_abs(&y, &refs[end])
                            };
                            assert!(err <= TOL, "{path}: {rot:?} {nh}/{nkv} {mode:?} pattern {name} all_positions={all_positions} push {start}..{end}: max abs {err}");
                            case_worst = case_worst.max(err);
                            start = end;
                        }
                        assert_eq!(s.lengths(), &[t, t]);
                    }
                }
                println!("{path}: {rot:?} {nh}/{nkv} {mode:?}: max abs {case_worst:.3e}");
                worst = worst.max(case_worst);
            }
        }
    }
    println!("{path}: chunked vs full forward, worst max abs over all cases: {worst:.3e}");
}

/// Rows of different lengths (0 new positions allowed) in one batched session, unused slots
/// poisoned with NaN and NaN in the ignored chunk positions: each row equals the forward of
/// that row alone over its own prefix.
#[test]
fn batched_rows_with_different_lengths_equal_each_row_alone() {
    on_both_kernel_paths(batched_rows);
}

fn batched_rows(path: &str) {
    let schedule: [[usize; 3]; 6] = [
        [5, 2, 0],
        [3, 5, 1],
        [5, 0, 4],
        [2, 3, 2],
        [5, 3, 0],
        [0, 0, 5],
    ];
    let totals = [20usize, 13, 12];
    let (b, t, e) = (3, 5, 6);
    let mut worst = 0f32;
    for rot in [Rot::Rope, Rot::Yarn, Rot::None] {
        for mode in [
            OutputMode::LastTimestep,
            OutputMode::MeanPool,
            OutputMode::All,
        ] {
            let c = cfg(rot, 4, 2, mode, e);
            let model = GqaModel::new(c.clone()).unwrap();
            let h = c.hidden_size;
            let seqs: Vec<Vec<f32>> = (0..b)
                .map(|r| pseudo(totals[r] * e, 40 + r as u64))
                .collect();
            // refs[r][p]: forward of row r alone over its first p positions.
            let refs: Vec<Vec<Vec<f32>>> = (0..b)
                .map(|r| prefix_refs(&model, &seqs[r], 1, totals[r], e))
                .collect();
            for all_positions in [false, true] {
                let mut s: Session = model.session(b, 24).unwrap();
                let mut lens = [0usize; 3];
                for ns in schedule {
                    let mut chunk = vec![f32::NAN; b * t * e];
                    for r in 0..b {
                        chunk[r * t * e..(r * t + ns[r]) * e]
                            .copy_from_slice(&seqs[r][lens[r] * e..(lens[r] + ns[r]) * e]);
                    }
                    s.poison_unused().unwrap();
                    let (y, dims) = s
                        .push(&model, &chunk, &[b, t, e], Some(&ns), all_positions)
                        .unwrap();
                    let per_position = all_positions || mode == OutputMode::All;
                    for r in 0..b {
                        let total = lens[r] + ns[r];
                        if per_position {
                            assert_eq!(dims, vec![b, t, h]);
                            for i in 0..t {
                                let got = &y[(r * t + i) * h..(r * t + i + 1) * h];
                                if i < ns[r] {
                                    let want = expected_position(mode, &refs[r], 0, lens[r] + i, h);
                                    let err = max_abs(got, &want);
                                    assert!(
                                        err <= TOL,
                                        "{path}: {rot:?} {mode:?} row {r} pos {}: {err}",
                                        lens[r] + i
                                    );
                                    worst = worst.max(err);
                                } else {
                                    assert!(
                                        got.iter().all(|&v| v == 0.0),
                                        "ignored position not zero"
                                    );
                                }
                            }
                        } else {
                            assert_eq!(dims, vec![b, h]);
                            let got = &y[r * h..(r + 1) * h];
                            if total == 0 {
                                assert!(got.iter().all(|&v| v == 0.0), "empty row not zero");
                            } else {
                                let err = max_abs(got, &refs[r][total]);
                                assert!(
                                    err <= TOL,
                                    "{path}: {rot:?} {mode:?} row {r} len {total}: {err}"
                                );
                                worst = worst.max(err);
                            }
                        }
                        lens[r] = total;
                    }
                    assert_eq!(s.lengths(), &lens);
                }
                assert_eq!(lens, totals);
            }
        }
    }
    println!("{path}: batched rows of different lengths vs each row alone: max abs {worst:.3e}");
}

#[test]
fn cache_bytes_follow_the_formula_and_gqa_is_a_fraction_of_mha() {
    let mut c = GqaConfig::new(64);
    c.hidden_size = 64;
    c.num_heads = 8;
    c.num_layers = 3;
    let bytes = |nkv: usize| {
        let mut c = c.clone();
        c.num_kv_heads = nkv;
        let model = GqaModel::new(c).unwrap();
        let s = model.session(2, 10).unwrap();
        // 2 (K and V) * layers * NKV * headDim * 4 bytes per token, headDim = 64/8 = 8.
        assert_eq!(s.kv_cache_bytes_per_token(), (2 * 3 * nkv * 8 * 4) as u64);
        assert_eq!(s.kv_cache_bytes(), 2 * 10 * s.kv_cache_bytes_per_token());
        s.kv_cache_bytes()
    };
    let (gqa, mqa, mha) = (bytes(2), bytes(1), bytes(8));
    assert_eq!(gqa, 2 * 10 * 2 * 3 * 2 * 8 * 4);
    assert_eq!(gqa * 4, mha, "GQA 8/2 uses a quarter of MHA 8/8");
    assert_eq!(mqa * 8, mha, "MQA uses an eighth of MHA 8/8");
}

#[test]
fn cache_full_leaves_the_session_unchanged() {
    let (b, e) = (2, 6);
    let c = cfg(Rot::Rope, 4, 2, OutputMode::LastTimestep, e);
    let model = GqaModel::new(c.clone()).unwrap();
    let h = c.hidden_size;
    let x = pseudo(b * 10 * e, 8);
    let mut s = model.session(b, 10).unwrap();
    // Row 0 gets 7 positions, row 1 gets 4.
    let first = slice(&x, 10, e, 0..b, 0, 7);
    s.push(&model, &first, &[b, 7, e], Some(&[7, 4]), false)
        .unwrap();
    let err = s
        .push(&model, &pseudo(b * 5 * e, 9), &[b, 5, e], None, false)
        .unwrap_err();
    assert_eq!(
        err,
        Error::CacheFull {
            what: "row 0".into(),
            capacity: 10,
            cached: 7,
            pushed: 5
        }
    );
    assert_eq!(err.code(), "CACHE_FULL");
    let err = s
        .push(
            &model,
            &pseudo(b * 7 * e, 9),
            &[b, 7, e],
            Some(&[0, 7]),
            false,
        )
        .unwrap_err();
    assert_eq!(
        err,
        Error::CacheFull {
            what: "row 1".into(),
            capacity: 10,
            cached: 4,
            pushed: 7
        }
    );
    assert_eq!(s.lengths(), &[7, 4]);
    // A valid push after the failures: rows continue where they were.
    let mut chunk = vec![f32::NAN; b * 6 * e];
    chunk[..3 * e].copy_from_slice(&x[7 * e..10 * e]);
    chunk[6 * e..12 * e].copy_from_slice(&x[(10 + 4) * e..(10 + 10) * e]);
    let (y, _) = s
        .push(&model, &chunk, &[b, 6, e], Some(&[3, 6]), false)
        .unwrap();
    assert_eq!(s.lengths(), &[10, 10]);
    let (want, _) = model.forward_f32(&x, &[b, 10, e], None).unwrap();
    let err = max_abs(&y, &want);
    assert!(err <= TOL, "after CacheFull: {err}");
    // Full now: even one position is rejected, and reset makes room again.
    assert!(matches!(
        s.push(&model, &x[..b * e], &[b, 1, e], None, false),
        Err(Error::CacheFull { .. })
    ));
    s.reset();
    assert_eq!(s.lengths(), &[0, 0]);
    let (y, _) = s.push(&model, &x, &[b, 10, e], None, false).unwrap();
    assert!(max_abs(&y, &want) <= TOL);
    assert_eq!(h, 32);
}

#[test]
fn truncate_rewinds_for_decode_benchmarks() {
    let (b, e) = (1, 6);
    let model = GqaModel::new(cfg(Rot::Yarn, 4, 2, OutputMode::LastTimestep, e)).unwrap();
    let x = pseudo(12 * e, 3);
    let mut s = model.session(b, 12).unwrap();
    s.push(&model, &x[..10 * e], &[1, 10, e], None, false)
        .unwrap();
    let (a, _) = s
        .push(&model, &x[10 * e..11 * e], &[1, 1, e], None, false)
        .unwrap();
    s.truncate(10);
    assert_eq!(s.lengths(), &[10]);
    s.poison_unused().unwrap();
    let (again, _) = s
        .push(&model, &x[10 * e..11 * e], &[1, 1, e], None, false)
        .unwrap();
    assert_eq!(a, again);
    let (want, _) = model.forward_f32(&x[..11 * e], &[1, 11, e], None).unwrap();
    assert!(max_abs(&a, &want) <= TOL);
}

#[test]
fn session_errors_name_the_input_and_change_nothing() {
    let e = 6;
    let c = cfg(Rot::Rope, 4, 2, OutputMode::MeanPool, e);
    let model = GqaModel::new(c.clone()).unwrap();
    assert!(
        matches!(model.session(2, 0), Err(Error::InvalidInput { ref what, .. }) if what == "maxLen")
    );
    assert!(
        matches!(model.session(1 << 20, 1 << 20), Err(Error::OutOfMemory { ref what, .. }) if what == "kv cache")
    );
    let mut s = model.session(2, 8).unwrap();
    let x = pseudo(2 * 3 * e, 1);
    s.push(&model, &x, &[2, 3, e], None, false).unwrap();
    let what = |r: gqa_core::Result<(Vec<f32>, Vec<usize>)>| match r {
        Err(Error::InvalidInput { what, .. }) => what,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    assert_eq!(
        what(s.push(&model, &x, &[2, 3, e], Some(&[3, 4]), false)),
        "row_lengths[1]"
    );
    assert_eq!(
        what(s.push(&model, &x, &[2, 3, e], Some(&[3]), false)),
        "row_lengths"
    );
    assert_eq!(what(s.push(&model, &x, &[3, 2, e], None, false)), "dims");
    assert_eq!(what(s.push(&model, &x, &[2, 3, 5], None, false)), "dims");
    assert_eq!(what(s.push(&model, &x, &[2, 0, e], None, false)), "dims");
    assert_eq!(what(s.push(&model, &x, &[2, 3], None, false)), "dims");
    assert_eq!(
        what(s.push(&model, &x[1..], &[2, 3, e], None, false)),
        "input"
    );
    let mut other = c.clone();
    other.num_kv_heads = 1;
    let other = GqaModel::new(other).unwrap();
    assert_eq!(what(s.push(&other, &x, &[2, 3, e], None, false)), "model");
    assert_eq!(s.lengths(), &[3, 3]);
    // Still exact after the rejected pushes: 3 + 2 positions equal the forward over 5.
    let full = pseudo(2 * 5 * e, 2);
    let mut s = model.session(2, 8).unwrap();
    s.push(
        &model,
        &slice(&full, 5, e, 0..2, 0, 3),
        &[2, 3, e],
        None,
        false,
    )
    .unwrap();
    assert!(s
        .push(&model, &x, &[2, 3, e], Some(&[9, 0]), false)
        .is_err());
    let (y, _) = s
        .push(
            &model,
            &slice(&full, 5, e, 0..2, 3, 5),
            &[2, 2, e],
            None,
            false,
        )
        .unwrap();
    let (want, _) = model.forward_f32(&full, &[2, 5, e], None).unwrap();
    assert!(max_abs(&y, &want) <= TOL);
    // Batch 0: empty result of the right shape.
    let mut s0 = model.session(0, 4).unwrap();
    assert_eq!(
        s0.push(&model, &[], &[0, 2, e], None, false).unwrap(),
        (vec![], vec![0, c.hidden_size])
    );
}

/// A sliding-window model (W = 1, 5, 16 over T = 64, rotary on) streamed in chunks of 1, W,
/// W + 1 and longer than W: every push's per-position outputs equal the full windowed forward
/// over the prefix, on both attention paths.
#[test]
fn windowed_pushes_equal_full_windowed_forward_over_prefix() {
    on_both_kernel_paths(|path| {
        let (b, t, e) = (2, 64, 6);
        for w in [1usize, 5, 16] {
            let mut c = cfg(Rot::Rope, 4, 2, OutputMode::All, e);
            c.sliding_window = Some(w);
            let model = GqaModel::new(c.clone()).unwrap();
            let h = c.hidden_size;
            let x = pseudo(b * t * e, 9);
            let refs = prefix_refs(&model, &x, b, t, e);
            for step in [1, w, w + 1, 23] {
                let mut s = model.session(b, t).unwrap();
                let mut start = 0;
                while start < t {
                    let end = (start + step).min(t);
                    let n = end - start;
                    let chunk = slice(&x, t, e, 0..b, start, end);
                    let (y, _) = s.push(&model, &chunk, &[b, n, e], None, true).unwrap();
                    let mut want = Vec::new();
                    for row in 0..b {
                        for pos in start..end {
                            want.extend(expected_position(OutputMode::All, &refs, row, pos, h));
                        }
                    }
                    let err = max_abs(&y, &want);
                    assert!(
                        err <= TOL,
                        "{path}: W {w} chunks of {step}, push {start}..{end}: max abs {err}"
                    );
                    start = end;
                }
            }
        }
    });
}

/// Position `p` of a deterministic stream of `e` features (any length, no stored input).
fn stream_row(p: usize, e: usize) -> Vec<f32> {
    (0..e)
        .map(|k| ((p as f64 * 0.37 + k as f64 * 1.3).sin() * 1.5) as f32)
        .collect()
}

/// A sliding-window model (`all` outputs, rotary) for the streaming tests.
fn windowed(w: usize, e: usize, layers: usize) -> GqaModel {
    let mut c = cfg(Rot::Rope, 4, 2, OutputMode::All, e);
    c.num_layers = layers;
    c.sliding_window = Some(w);
    GqaModel::new(c).unwrap()
}

/// Unbounded windowed sessions (`Session::streaming`) over 400 positions, far past their slots
/// (the ring moves its last W - 1 keys many times), rows of different speeds (row 1 gets about
/// half the positions of row 0 per push) and chunks of 1, 7, W + 1 and 150 (several passes):
/// each row's per-position outputs equal the full windowed forward over that row alone, on both
/// attention paths; the cache stays the size it was created with.
#[test]
fn unbounded_windowed_sessions_equal_the_full_forward_of_each_row() {
    on_both_kernel_paths(|path| {
        let (e, t) = (5, 400);
        for w in [1usize, 5, 70] {
            let model = windowed(w, e, 2);
            let h = model.config().hidden_size;
            let xs: Vec<f32> = (0..t).flat_map(|p| stream_row(p, e)).collect();
            let (full, _) = model.forward_f32(&xs, &[1, t, e], None).unwrap();
            for step in [1, 7, w + 1, 150] {
                let mut s = Session::streaming(&model, 2).unwrap();
                assert_eq!(s.max_len(), None);
                let bytes = s.kv_cache_bytes();
                let mut pos = [0usize; 2];
                while pos[1] < t {
                    let n = [step.min(t - pos[0]), (step / 2).max(1).min(t - pos[1])];
                    let mut chunk = vec![f32::NAN; 2 * step * e];
                    for (row, &p0) in pos.iter().enumerate() {
                        for i in 0..n[row] {
                            let dst = (row * step + i) * e;
                            chunk[dst..dst + e]
                                .copy_from_slice(&xs[(p0 + i) * e..(p0 + i + 1) * e]);
                        }
                    }
                    let (y, _) = s
                        .push(&model, &chunk, &[2, step, e], Some(&n), true)
                        .unwrap();
                    for row in 0..2 {
                        for i in 0..n[row] {
                            let p = pos[row] + i;
                            let got = &y[(row * step + i) * h..(row * step + i + 1) * h];
                            let err = max_abs(got, &full[p * h..(p + 1) * h]);
                            assert!(
                                err <= 1e-4,
                                "{path}: W {w} chunks of {step}, row {row} position {p}: max abs {err}"
                            );
                        }
                        pos[row] += n[row];
                    }
                    assert_eq!(s.lengths(), &pos);
                    assert_eq!(s.kv_cache_bytes(), bytes, "{path}: the cache grew");
                }
            }
        }
    });
}

/// A stream of 10^6 positions (tiny model, W = 4, two layers) at constant cache size: its
/// output at the last position equals a forward over the last `layers * (W - 1) + 1` positions
/// (the receptive field) at their absolute positions (`forward_f32_at`), and, rotary being
/// relative, the same window at position 0: rotary angles near 10^6 are as exact as at 0 (an
/// angle formed in f32 there is off by up to 0.03 rad).
#[test]
fn a_million_position_stream_equals_a_forward_at_its_absolute_positions() {
    let (e, w, layers, n, chunk) = (3, 4, 2, 1_000_000, 4096);
    let model = windowed(w, e, layers);
    let h = model.config().hidden_size;
    let mut s = Session::streaming(&model, 1).unwrap();
    let bytes = s.kv_cache_bytes();
    let mut p = 0;
    let mut last = Vec::new();
    while p < n {
        let c = chunk.min(n - p);
        let x: Vec<f32> = (p..p + c).flat_map(|q| stream_row(q, e)).collect();
        let (y, _) = s.push(&model, &x, &[1, c, e], None, false).unwrap();
        last = y[(c - 1) * h..c * h].to_vec();
        p += c;
    }
    assert_eq!(s.lengths(), &[n]);
    assert_eq!(s.kv_cache_bytes(), bytes);
    let field = layers * (w - 1) + 1;
    let x: Vec<f32> = (n - field..n).flat_map(|q| stream_row(q, e)).collect();
    let (y, _) = model
        .forward_f32_at(&x, &[1, field, e], None, n - field)
        .unwrap();
    let err = max_abs(&last, &y[(field - 1) * h..field * h]);
    println!(
        "stream of {n}: last output vs forward at offset {}: max abs {err:.2e}",
        n - field
    );
    assert!(err <= 1e-4, "max abs {err}");
    let (y0, _) = model.forward_f32(&x, &[1, field, e], None).unwrap();
    let err0 = max_abs(&last, &y0[(field - 1) * h..field * h]);
    println!("the same window at position 0: max abs {err0:.2e}");
    assert!(err0 <= 1e-4, "max abs {err0}");
}

#[test]
fn a_session_without_max_len_needs_a_sliding_window() {
    let model = GqaModel::new(cfg(Rot::Rope, 4, 2, OutputMode::All, 5)).unwrap();
    let e = Session::streaming(&model, 1).unwrap_err();
    assert_eq!(e.code(), "INVALID_INPUT");
    assert!(e.to_string().contains("maxLen"), "{e}");
    // With a window and maxLen, maxLen still bounds the stream and the slots stop at the ring's.
    let model = windowed(8, 5, 1);
    let s = model.session(1, 10).unwrap();
    assert_eq!((s.capacity(), s.max_len()), (10, Some(10)));
    let s = model.session(1, 100_000).unwrap();
    assert_eq!((s.capacity(), s.max_len()), (8 - 1 + 64, Some(100_000)));
    let mut s = model.session(1, 3).unwrap();
    let x = vec![0.5f32; 4 * 5];
    let err = s.push(&model, &x, &[1, 4, 5], None, false).unwrap_err();
    assert!(matches!(err, Error::CacheFull { .. }), "{err}");
}

/// `TaskModel::push_predict_f32` on a windowed classifier's stream equals `predict_f32` over each
/// prefix (the head on the session's newest output), and refuses a model without a head before
/// the session changes.
#[test]
fn session_predictions_equal_predict_over_the_prefix() {
    use gqa_core::train::{HeadConfig, TaskModel};
    let (e, t, w) = (4, 90, 6);
    let mut c = cfg(Rot::Rope, 4, 2, OutputMode::LastTimestep, e);
    c.sliding_window = Some(w);
    let head = HeadConfig::Classification {
        num_classes: 3,
        class_weights: None,
    };
    let task = TaskModel::new(c.clone(), Some(head)).unwrap();
    let xs: Vec<f32> = (0..t).flat_map(|p| stream_row(p, e)).collect();
    let mut s = Session::streaming(&task.model, 1).unwrap();
    for p in 0..t {
        let (got, dims) = task
            .push_predict_f32(&mut s, &xs[p * e..(p + 1) * e], &[1, 1, e], None)
            .unwrap();
        assert_eq!(dims, vec![1, 3]);
        let (want, _) = task
            .predict_f32(&xs[..(p + 1) * e], &[1, p + 1, e], None)
            .unwrap();
        let err = max_abs(&got, &want);
        assert!(err <= 1e-5, "position {p}: max abs {err}");
        assert!((got.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let bare = TaskModel::new(c, None).unwrap();
    let mut s = Session::streaming(&bare.model, 1).unwrap();
    let err = bare
        .push_predict_f32(&mut s, &xs[..e], &[1, 1, e], None)
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_OPTION");
    assert_eq!(s.lengths(), &[0]);
}
