//! The fused CPU inference kernels against the reference candle ops on random inputs:
//! attention (GQA, MQA, MHA; key lengths; query offsets; per-row offsets; strided cache views;
//! T = 1 and T = 300; several head_dims), bias + GELU, LayerNorm, bias + residual, rotary.
//! Every fast path must equal the reference within 1e-5 (max abs).

use candle_core::{DType, Device, Tensor, Var};
use gqa_core::kernels::cpu::{self, AttentionDims};
use gqa_core::kernels::{fused, reference};
use gqa_core::nn::{LayerNorm, Linear};
use gqa_core::{Mask, Rotary};

mod common;
use common::{max_abs_diff, pseudo_amp};

const TOL: f32 = 1e-5;

fn t(data: Vec<f32>, dims: &[usize]) -> Tensor {
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

fn vals(x: &Tensor) -> Vec<f32> {
    x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

struct Case {
    b: usize,
    nh: usize,
    nkv: usize,
    tq: usize,
    tk: usize,
    d: usize,
    offset: usize,
    lengths: Option<Vec<usize>>,
}

/// Fused (tensor wrapper, both output layouts, and the slice API) vs reference on one case;
/// returns the max abs difference.
fn check_attention(c: &Case, seed: u64) -> f32 {
    let Case {
        b,
        nh,
        nkv,
        tq,
        tk,
        d,
        offset,
        ..
    } = *c;
    let lengths = c.lengths.as_deref();
    // Scores of a few units make the softmax far from uniform.
    let q = t(pseudo_amp(b * nh * tq * d, seed, 2.0), &[b, nh, tq, d]);
    let k = t(
        pseudo_amp(b * nkv * tk * d, seed + 1, 2.0),
        &[b, nkv, tk, d],
    );
    let v = t(
        pseudo_amp(b * nkv * tk * d, seed + 2, 1.0),
        &[b, nkv, tk, d],
    );
    let scale = 1.0 / (d as f64).sqrt();
    let mask = Mask::causal(offset, tk, lengths);
    let want = vals(&reference::attention(&q, &k, &v, &mask, scale).unwrap());
    let got = vals(&fused::attention(&q, &k, &v, scale, &mask, false).unwrap());
    let mut worst = max_abs_diff(&want, &got);
    // Heads merged: [B, Tq, NH*D] equals the transposed reference.
    let merged = fused::attention(&q, &k, &v, scale, &mask, true).unwrap();
    let want_merged = reference::attention(&q, &k, &v, &mask, scale)
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    worst = worst.max(max_abs_diff(&vals(&want_merged), &vals(&merged)));
    // Slice API.
    let dims = AttentionDims {
        batch: b,
        num_heads: nh,
        num_kv_heads: nkv,
        q_len: tq,
        k_len: tk,
        head_dim: d,
    };
    let mut out = vec![f32::NAN; b * nh * tq * d];
    cpu::attention_cpu(
        &vals(&q),
        &vals(&k),
        &vals(&v),
        dims,
        scale as f32,
        offset,
        lengths,
        &mut out,
    )
    .unwrap();
    worst = worst.max(max_abs_diff(&want, &out));
    assert!(worst.is_finite());
    worst
}

/// A causal self-attention case: `b` rows, `nh` query / `nkv` KV heads, `t` queries over the
/// same `t` keys, head dim `d`, no offset, no padding.
fn self_attention(b: usize, nh: usize, nkv: usize, t: usize, d: usize) -> Case {
    Case {
        b,
        nh,
        nkv,
        tq: t,
        tk: t,
        d,
        offset: 0,
        lengths: None,
    }
}

#[test]
fn fused_attention_matches_reference_gqa_mqa_mha() {
    let cases = [
        // GQA 4/2, MQA 4/1, MHA 4/4 at T = 60 (one partial key block).
        self_attention(2, 4, 2, 60, 32),
        self_attention(2, 4, 1, 60, 32),
        self_attention(2, 4, 4, 60, 32),
        // GQA 8/2 (groups of 4 rows) and 6/2 (groups of 3: tiles straddle query positions).
        self_attention(1, 8, 2, 37, 16),
        self_attention(1, 6, 2, 29, 24),
        // T = 300: several key blocks, online-softmax rescaling; odd head_dim tail.
        self_attention(1, 4, 2, 300, 32),
        self_attention(2, 2, 1, 300, 40),
        self_attention(1, 2, 2, 300, 64),
        self_attention(1, 3, 1, 130, 5),
    ];
    for (i, c) in cases.iter().enumerate() {
        let w = check_attention(c, 100 + i as u64);
        eprintln!("attention case {i}: max abs diff {w:.3e}");
        assert!(
            w <= TOL,
            "case {i} (nh {} nkv {} t {} d {}): max abs diff {w}",
            c.nh,
            c.nkv,
            c.tq,
            c.d
        );
    }
}

#[test]
fn fused_attention_matches_reference_with_lengths_and_offsets() {
    let cases = [
        // Per-sequence key lengths (padding), T = 60 and T = 300.
        Case {
            b: 3,
            nh: 4,
            nkv: 2,
            tq: 60,
            tk: 60,
            d: 32,
            offset: 0,
            lengths: Some(vec![60, 17, 1]),
        },
        Case {
            b: 2,
            nh: 4,
            nkv: 1,
            tq: 300,
            tk: 300,
            d: 32,
            offset: 0,
            lengths: Some(vec![130, 300]),
        },
        Case {
            b: 2,
            nh: 4,
            nkv: 4,
            tq: 70,
            tk: 70,
            d: 16,
            offset: 0,
            lengths: Some(vec![65, 3]),
        },
        // KV cache: decode (T = 1) after 299 cached positions, and a chunk of 5 after 40.
        Case {
            b: 2,
            nh: 4,
            nkv: 2,
            tq: 1,
            tk: 300,
            d: 32,
            offset: 299,
            lengths: None,
        },
        Case {
            b: 1,
            nh: 8,
            nkv: 1,
            tq: 1,
            tk: 1,
            d: 32,
            offset: 0,
            lengths: None,
        },
        Case {
            b: 2,
            nh: 4,
            nkv: 2,
            tq: 5,
            tk: 45,
            d: 32,
            offset: 40,
            lengths: None,
        },
        Case {
            b: 2,
            nh: 4,
            nkv: 2,
            tq: 5,
            tk: 45,
            d: 32,
            offset: 40,
            lengths: Some(vec![45, 42]),
        },
        Case {
            b: 1,
            nh: 4,
            nkv: 2,
            tq: 1,
            tk: 1,
            d: 8,
            offset: 0,
            lengths: None,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let w = check_attention(c, 200 + i as u64);
        eprintln!("attention (lengths/offsets) case {i}: max abs diff {w:.3e}");
        assert!(
            w <= TOL,
            "case {i} (tq {} tk {} offset {} lengths {:?}): max abs diff {w}",
            c.tq,
            c.tk,
            c.offset,
            c.lengths
        );
    }
}

#[test]
fn fused_attention_reads_strided_cache_views_and_per_row_offsets() {
    // A cache [B, NKV, 64, D] of which the first 20 positions are used; queries for 3 new
    // positions at per-row offsets (row 0 has 17 cached positions, row 1 has 12).
    let (b, nh, nkv, cap, d) = (2, 4, 2, 64, 16);
    let kc = t(pseudo_amp(b * nkv * cap * d, 7, 2.0), &[b, nkv, cap, d]);
    let vc = t(pseudo_amp(b * nkv * cap * d, 8, 1.0), &[b, nkv, cap, d]);
    let q = t(pseudo_amp(b * nh * 3 * d, 9, 2.0), &[b, nh, 3, d]);
    let scale = 0.25;
    let offsets = [17usize, 12];
    let key_lengths = [20usize, 15];
    let got = fused::attention(
        &q,
        &kc.narrow(2, 0, 20).unwrap(),
        &vc.narrow(2, 0, 20).unwrap(),
        scale,
        &Mask::rows(&offsets, &key_lengths),
        false,
    )
    .unwrap();
    for row in 0..b {
        let l = key_lengths[row];
        let k = kc.narrow(0, row, 1).unwrap().narrow(2, 0, l).unwrap();
        let v = vc.narrow(0, row, 1).unwrap().narrow(2, 0, l).unwrap();
        let mask = Mask::causal(offsets[row], l, None);
        let want =
            reference::attention(&q.narrow(0, row, 1).unwrap(), &k, &v, &mask, scale).unwrap();
        let w = max_abs_diff(&vals(&want), &vals(&got.narrow(0, row, 1).unwrap()));
        assert!(w <= TOL, "row {row}: max abs diff {w}");
    }
    // Transposed projections ([B, T, N, D] viewed as [B, N, T, D]) are read through strides.
    let qp = t(pseudo_amp(b * 9 * nh * d, 10, 2.0), &[b, 9, nh, d])
        .transpose(1, 2)
        .unwrap();
    let kp = t(pseudo_amp(b * 9 * nkv * d, 11, 2.0), &[b, 9, nkv, d])
        .transpose(1, 2)
        .unwrap();
    let vp = t(pseudo_amp(b * 9 * nkv * d, 12, 1.0), &[b, 9, nkv, d])
        .transpose(1, 2)
        .unwrap();
    let mask = Mask::padded(9, None);
    let want = reference::attention(&qp, &kp, &vp, &mask, scale).unwrap();
    let got = fused::attention(&qp, &kp, &vp, scale, &mask, false).unwrap();
    assert!(max_abs_diff(&vals(&want), &vals(&got)) <= TOL);
}

#[test]
fn fused_attention_rejects_bad_shapes_and_zero_length_rows_give_zeros() {
    let dims = AttentionDims {
        batch: 1,
        num_heads: 3,
        num_kv_heads: 2,
        q_len: 2,
        k_len: 2,
        head_dim: 4,
    };
    let z = vec![0f32; 64];
    let mut out = vec![0f32; 24];
    assert!(
        cpu::attention_cpu(&z, &z, &z, dims, 1.0, 0, None, &mut out).is_err(),
        "NKV must divide NH"
    );
    let dims = AttentionDims {
        num_heads: 2,
        ..dims
    };
    assert!(
        cpu::attention_cpu(&z[..10], &z, &z, dims, 1.0, 0, None, &mut out).is_err(),
        "q too short"
    );
    assert!(
        cpu::attention_cpu(&z, &z, &z, dims, 1.0, 0, Some(&[3]), &mut out).is_err(),
        "length > Tk"
    );
    let mut out = vec![f32::NAN; 16];
    cpu::attention_cpu(
        &pseudo_amp(16, 1, 1.0),
        &pseudo_amp(16, 2, 1.0),
        &pseudo_amp(16, 3, 1.0),
        dims,
        1.0,
        0,
        Some(&[0]),
        &mut out,
    )
    .unwrap();
    assert!(
        out.iter().all(|&x| x == 0.0),
        "no visible key -> zeros, got {out:?}"
    );
}

fn linear(out: usize, inp: usize, seed: u64) -> Linear {
    Linear::new(
        Var::from_vec(pseudo_amp(out * inp, seed, 0.3), (out, inp), &Device::Cpu).unwrap(),
        Var::from_vec(pseudo_amp(out, seed + 1, 1.0), out, &Device::Cpu).unwrap(),
    )
}

#[test]
fn fused_bias_gelu_matches_candle_gelu_erf() {
    // Pre-activations spread over about [-12, 12] (both GELU tails).
    let lin = linear(96, 40, 3);
    let x = t(pseudo_amp(7 * 13 * 40, 4, 3.0), &[7, 13, 40]);
    let want = lin.forward(&x, true).unwrap().gelu_erf().unwrap();
    let got = lin.forward_gelu(&x, false).unwrap();
    assert_eq!(got.dims(), &[7, 13, 96]);
    let w = max_abs_diff(&vals(&want), &vals(&got));
    assert!(w <= TOL, "bias+GELU max abs diff {w}");
    // The kernel alone on a dense grid against candle's float64-based gelu_erf.
    let grid: Vec<f32> = (0..48_001).map(|i| -12.0 + i as f32 * 0.0005).collect();
    let want = vals(&t(grid.clone(), &[grid.len()]).gelu_erf().unwrap());
    let mut got = grid.clone();
    cpu::bias_gelu_rows(&mut got, &[0.0]).unwrap();
    let w = max_abs_diff(&want, &got);
    eprintln!("GELU on [-12, 12]: max abs diff {w:.3e}");
    assert!(w <= 1e-6, "GELU on [-12, 12]: max abs diff {w}");
}

#[test]
fn fused_linear_bias_and_residual_match_candle() {
    let lin = linear(48, 64, 5);
    let x = t(pseudo_amp(3 * 11 * 64, 6, 1.0), &[3, 11, 64]);
    let r = t(pseudo_amp(3 * 11 * 48, 7, 1.0), &[3, 11, 48]);
    let want = lin.forward(&x, true).unwrap();
    assert!(max_abs_diff(&vals(&want), &vals(&lin.forward(&x, false).unwrap())) <= TOL);
    let want_r = (&r + &want).unwrap();
    let got_r = lin.forward_residual(&x, &r, false).unwrap();
    assert!(max_abs_diff(&vals(&want_r), &vals(&got_r)) <= TOL);
    assert!(lin
        .forward_residual(&x, &r.narrow(2, 0, 47).unwrap(), false)
        .is_err());
}

#[test]
fn fused_layer_norm_matches_candle_ops() {
    for (rows, w) in [(1usize, 1usize), (5, 7), (64, 256), (9, 520)] {
        let ln = LayerNorm::new(
            Var::from_vec(pseudo_amp(w, 11, 1.5), w, &Device::Cpu).unwrap(),
            Var::from_vec(pseudo_amp(w, 12, 0.5), w, &Device::Cpu).unwrap(),
        );
        // A large common offset stresses the variance computation.
        let x: Vec<f32> = pseudo_amp(rows * w, 13, 2.0)
            .into_iter()
            .map(|v| v + 30.0)
            .collect();
        let x = t(x, &[rows, w]);
        let want = ln.forward(&x, true).unwrap();
        let got = ln.forward(&x, false).unwrap();
        let d = max_abs_diff(&vals(&want), &vals(&got));
        assert!(d <= TOL, "LayerNorm [{rows}, {w}]: max abs diff {d}");
    }
}

#[test]
fn fused_rotary_matches_rotary_apply() {
    let (b, tt, n, d) = (2, 9, 3, 8);
    let inv: Vec<f32> = (0..d / 2)
        .map(|i| 10000f32.powf(-(2.0 * i as f32) / d as f32))
        .collect();
    let rot = Rotary::new(&inv, 20, &Device::Cpu).unwrap();
    let x = t(pseudo_amp(b * tt * n * d, 21, 1.0), &[b, tt, n * d]);
    for offset in [0usize, 11] {
        let want = rot
            .apply(
                &x.reshape((b, tt, n, d)).unwrap().transpose(1, 2).unwrap(),
                offset,
            )
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let y = x.copy().unwrap();
        fused::rotary_in_place(&y, n, d, rot.cos(), rot.sin(), offset).unwrap();
        let w = max_abs_diff(&vals(&want), &vals(&y));
        assert!(w <= TOL, "rotary offset {offset}: max abs diff {w}");
    }
    // Refusals happen before anything is written: positions past the tables, and a tensor that
    // is not f32 (the kernel reads f32 storage only; an F64 or F16 `x` must be an error, never a
    // reinterpretation of its bytes).
    let y = x.copy().unwrap();
    assert!(
        fused::rotary_in_place(&y, n, d, rot.cos(), rot.sin(), 12).is_err(),
        "positions past the tables"
    );
    assert_eq!(
        vals(&y),
        vals(&x),
        "a refused rotary call modified its input"
    );
    for dt in [DType::F64, DType::F16, DType::BF16] {
        let y = x.to_dtype(dt).unwrap();
        let before = y
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!(
            fused::rotary_in_place(&y, n, d, rot.cos(), rot.sin(), 0).is_err(),
            "{dt:?} input accepted"
        );
        assert_eq!(y.dtype(), dt);
        assert_eq!(
            y.to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            before,
            "{dt:?} input modified"
        );
    }
}
