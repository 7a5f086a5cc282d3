//! Model behaviour: KV-head sharing, padding, init, determinism, forward errors, autograd.

use candle_core::{Device, Tensor};
use gqa_core::init::{glorot_bound, glorot_uniform};
use gqa_core::{AttentionConfig, Dropout, Error, GqaAttention, GqaConfig, GqaModel, OutputMode};

mod common;
use common::pseudo;

fn small_cfg(mode: OutputMode) -> GqaConfig {
    let mut c = GqaConfig::new(6);
    c.hidden_size = 16;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.num_layers = 2;
    c.rope = true;
    c.output_mode = mode;
    c.seed = 3;
    c
}

fn set(layer: &GqaAttention, name: &str, values: Vec<f32>) {
    let var = layer.params().get(name).unwrap();
    var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
        .unwrap();
}

#[test]
fn query_head_i_reads_kv_head_i_over_group() {
    // NH=4, NKV=2 (group 2), D=4, H=16. q = 0 (uniform attention), v = bias only: KV head j
    // holds (j+1)*10 + c in slot c. out_proj = identity. Head i's output then reveals its KV head.
    for (nh, nkv) in [(4usize, 2usize), (4, 1), (8, 2), (4, 4)] {
        let h = 4 * nh; // D = 4
        let cfg = AttentionConfig {
            hidden_size: h,
            num_heads: nh,
            num_kv_heads: nkv,
            ..Default::default()
        };
        let layer = GqaAttention::new(cfg).unwrap();
        let d = 4;
        set(&layer, "q_proj.weight", vec![0.0; nh * d * h]);
        set(&layer, "k_proj.weight", pseudo(nkv * d * h, 1));
        set(&layer, "v_proj.weight", vec![0.0; nkv * d * h]);
        set(
            &layer,
            "v_proj.bias",
            (0..nkv * d)
                .map(|i| ((i / d + 1) * 10 + i % d) as f32)
                .collect(),
        );
        let mut eye = vec![0.0; h * h];
        for i in 0..h {
            eye[i * h + i] = 1.0;
        }
        set(&layer, "out_proj.weight", eye);
        let (b, t) = (2, 3);
        let (out, dims) = layer
            .forward_f32(&pseudo(b * t * h, 2), &[b, t, h], None)
            .unwrap();
        assert_eq!(dims, vec![b, t, h]);
        let group = nh / nkv;
        for row in out.chunks(h) {
            for i in 0..nh {
                for c in 0..d {
                    let want = ((i / group + 1) * 10 + c) as f32;
                    assert!(
                        (row[i * d + c] - want).abs() < 1e-4,
                        "NH={nh} NKV={nkv} head {i}: {} vs {want}",
                        row[i * d + c]
                    );
                    if nkv > 1 && i / group != i % nkv {
                        let wrong = ((i % nkv + 1) * 10 + c) as f32;
                        assert!((row[i * d + c] - wrong).abs() > 1.0);
                    }
                }
            }
        }
    }
}

#[test]
fn causal_mask_blocks_future_keys() {
    // Changing x at the last position changes nothing at earlier positions.
    let cfg = small_cfg(OutputMode::All);
    let model = GqaModel::new(cfg).unwrap();
    let (b, t, e) = (1, 5, 6);
    let x = pseudo(b * t * e, 9);
    let mut x2 = x.clone();
    for v in &mut x2[(t - 1) * e..] {
        *v += 3.0;
    }
    let (y1, _) = model.forward_f32(&x, &[b, t, e], None).unwrap();
    let (y2, _) = model.forward_f32(&x2, &[b, t, e], None).unwrap();
    let h = 16;
    assert_eq!(&y1[..(t - 1) * h], &y2[..(t - 1) * h]);
    assert!(y1[(t - 1) * h..]
        .iter()
        .zip(&y2[(t - 1) * h..])
        .any(|(a, c)| (a - c).abs() > 1e-3));
}

#[test]
fn padded_sequences_equal_their_unpadded_runs_with_nan_padding() {
    for mode in [
        OutputMode::LastTimestep,
        OutputMode::MeanPool,
        OutputMode::All,
    ] {
        let model = GqaModel::new(small_cfg(mode)).unwrap();
        let (b, t, e, h) = (3usize, 7usize, 6usize, 16usize);
        let lengths = [4usize, 7, 1];
        let mut x = pseudo(b * t * e, 5);
        for (bi, &l) in lengths.iter().enumerate() {
            for p in l..t {
                for c in 0..e {
                    x[(bi * t + p) * e + c] = f32::NAN;
                }
            }
        }
        let (y, dims) = model.forward_f32(&x, &[b, t, e], Some(&lengths)).unwrap();
        assert!(y.iter().all(|v| v.is_finite()), "{mode:?}: NaN leaked");
        for (bi, &l) in lengths.iter().enumerate() {
            let xs = &x[bi * t * e..(bi * t + l) * e];
            let (ys, _) = model.forward_f32(xs, &[1, l, e], None).unwrap();
            let got: &[f32] = match mode {
                OutputMode::All => &y[bi * t * h..(bi * t + l) * h],
                _ => &y[bi * h..(bi + 1) * h],
            };
            assert_eq!(got.len(), ys.len());
            let err = got
                .iter()
                .zip(&ys)
                .map(|(a, c)| (a - c).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-5, "{mode:?} seq {bi}: err {err}");
            if mode == OutputMode::All {
                assert!(
                    y[(bi * t + l) * h..(bi + 1) * t * h]
                        .iter()
                        .all(|&v| v == 0.0),
                    "padded outputs not zero"
                );
                assert_eq!(dims, vec![b, t, h]);
            }
        }
    }
}

#[test]
fn init_statistics_follow_glorot_uniform() {
    let model = GqaModel::new(GqaConfig::new(287)).unwrap();
    for (name, var) in model.params().iter() {
        let v = var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let n = v.len() as f64;
        if name.ends_with(".weight") && !name.contains("norm") {
            let (out, inp) = var.dims2().unwrap();
            let b = glorot_bound(out, inp) as f64;
            assert!((b - (6.0 / (out + inp) as f64).sqrt()).abs() < 1e-6);
            assert!(
                v.iter().all(|&x| (x as f64) >= -b && (x as f64) < b),
                "{name}: value outside [-b, b)"
            );
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let msq = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / n;
            // U(-b,b): mean 0 (sd b/sqrt(3n)), E[x^2] = b^2/3 (sd b^2*sqrt(4/45/n)); 6 sigma.
            assert!(
                mean.abs() < 6.0 * b / (3.0 * n).sqrt(),
                "{name}: mean {mean}"
            );
            assert!(
                (msq - b * b / 3.0).abs() < 6.0 * b * b * (4.0 / 45.0 / n).sqrt(),
                "{name}: E[x^2] {msq} vs {}",
                b * b / 3.0
            );
        } else if name.ends_with("norm.weight") {
            assert!(v.iter().all(|&x| x == 1.0), "{name}");
        } else {
            assert!(v.iter().all(|&x| x == 0.0), "{name}");
        }
    }
}

#[test]
fn same_seed_gives_bitwise_same_weights() {
    let a = GqaModel::new(small_cfg(OutputMode::All)).unwrap();
    let b = GqaModel::new(small_cfg(OutputMode::All)).unwrap();
    for ((na, va), (nb, vb)) in a.params().iter().zip(b.params().iter()) {
        assert_eq!(na, nb);
        let x: Vec<u32> = va
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|f| f.to_bits())
            .collect();
        let y: Vec<u32> = vb
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|f| f.to_bits())
            .collect();
        assert_eq!(x, y, "{na}");
    }
    assert_eq!(a.weights_digest().unwrap(), b.weights_digest().unwrap());
    let mut other = small_cfg(OutputMode::All);
    other.seed = 4;
    let c = GqaModel::new(other).unwrap();
    assert_ne!(a.weights_digest().unwrap(), c.weights_digest().unwrap());
    // The stream is the canonical index: input_projection.weight is stream 0 and
    // blocks.0.attn.q_proj.weight (index 4) is stream 4.
    let q = a
        .params()
        .get("blocks.0.attn.q_proj.weight")
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(q, glorot_uniform(3, 4, 16, 16));
    let w = a
        .params()
        .get("input_projection.weight")
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(w, glorot_uniform(3, 0, 16, 6));
    assert_ne!(glorot_uniform(3, 4, 16, 16), glorot_uniform(3, 6, 16, 16));
}

/// The 24-bit index `m` with `x == -b + 2b * (m * 2^-24)` evaluated in f32 exactly as
/// `init::glorot_uniform` documents it, or None when no `m` in `[0, 2^24)` gives `x` bit for bit.
fn glorot_grid_index(x: f32, b: f32) -> Option<u32> {
    let est = ((x as f64 + b as f64) / (2.0 * b as f64) * 16_777_216.0).round() as i64;
    (est - 4..=est + 4)
        .filter(|m| (0..1i64 << 24).contains(m))
        .map(|m| m as u32)
        .find(|&m| (-b + 2.0 * b * (m as f32 * (1.0 / 16_777_216.0))).to_bits() == x.to_bits())
}

#[test]
fn glorot_uniform_value_rule() {
    // u = (next_u32 >> 8) * 2^-24 in [0,1) and value = -b + 2b*u in f32: every value is the f32
    // image of one 24-bit grid index, bit for bit.
    let (out, inp) = (64usize, 64usize);
    let v = glorot_uniform(0, 0, out, inp);
    assert_eq!(v.len(), out * inp);
    let b = (6.0f32 / 128.0).sqrt();
    assert_eq!(b, glorot_bound(out, inp));
    let idx: Vec<u32> = v
        .iter()
        .map(|&x| {
            glorot_grid_index(x, b)
                .unwrap_or_else(|| panic!("{x} is not -b + 2b*m/2^24 for any 24-bit m"))
        })
        .collect();
    // The 4096 indices use the whole 24-bit range (min below 2^24/100 and max above 99/100 of it
    // fail with probability 2 * 0.99^4096 < 1e-17).
    let (lo, hi) = (*idx.iter().min().unwrap(), *idx.iter().max().unwrap());
    assert!(
        lo < (1 << 24) / 100 && hi > (1 << 24) / 100 * 99,
        "indices span [{lo}, {hi}]"
    );
    // The check rejects what is off the grid: each value near 0 (where f32 resolves a fraction of
    // a grid step) moved by half a step.
    let step = 2.0 * b / 16_777_216.0;
    let near0: Vec<f32> = v.iter().copied().filter(|x| x.abs() < b / 4.0).collect();
    assert!(near0.len() > 100);
    assert!(near0
        .iter()
        .all(|&x| glorot_grid_index(x + step / 2.0, b).is_none()));
}

#[test]
fn forward_f32_errors_name_the_input() {
    let model = GqaModel::new(small_cfg(OutputMode::LastTimestep)).unwrap();
    let e = 6;
    let what = |r: gqa_core::Result<(Vec<f32>, Vec<usize>)>| match r {
        Err(Error::InvalidInput { what, .. }) => what,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    assert_eq!(what(model.forward_f32(&[0.0; 12], &[2, 6], None)), "dims");
    assert_eq!(
        what(model.forward_f32(&[0.0; 14], &[2, 1, 7], None)),
        "dims"
    );
    assert_eq!(what(model.forward_f32(&[], &[2, 0, e], None)), "dims");
    assert_eq!(
        what(model.forward_f32(&[0.0; 11], &[2, 1, e], None)),
        "input"
    );
    assert_eq!(
        what(model.forward_f32(&[0.0; 24], &[2, 2, e], Some(&[1]))),
        "lengths"
    );
    assert_eq!(
        what(model.forward_f32(&[0.0; 24], &[2, 2, e], Some(&[1, 0]))),
        "lengths[1]"
    );
    assert_eq!(
        what(model.forward_f32(&[0.0; 24], &[2, 2, e], Some(&[3, 1]))),
        "lengths[0]"
    );
    let msg = model
        .forward_f32(&[0.0; 11], &[2, 1, e], None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("12") && msg.contains("11"), "{msg}");
    // Buffers that would really be allocated are refused before allocating: the FFN activations
    // [B, T, 4H] at H = 256 of just over the memory limit. The limit is set here (256 MiB, the
    // input itself 256 KiB) so the check runs on every host, whatever its memory; the other tests
    // of this binary stay far below it.
    let limit = gqa_core::memory::set_limit(Some(256 << 20)).unwrap();
    assert_eq!(limit, 256 << 20);
    let mut tiny = small_cfg(OutputMode::LastTimestep);
    tiny.embed_dim = 1;
    tiny.hidden_size = 256;
    let tiny = GqaModel::new(tiny).unwrap();
    let rows = (limit / (16 * 256)) as usize + 1;
    let big = vec![0.0f32; rows];
    let refused = tiny.forward_f32(&big, &[1, rows, 1], None);
    // One row fewer fits exactly (16 * 256 * (rows - 1) == limit): the bound is the limit itself.
    let fits = gqa_core::error::check_f32_buffer("ffn activations", &[1, rows - 1, 4 * 256]);
    gqa_core::memory::set_limit(None).unwrap();
    match refused {
        Err(Error::OutOfMemory {
            what,
            requested,
            limit: l,
            ..
        }) => {
            assert_eq!(what, "ffn activations");
            assert_eq!((requested, l), (16 * 256 * rows as u64, limit));
        }
        other => panic!("expected OutOfMemory, got {:?}", other.map(|(_, d)| d)),
    }
    assert!(fits.is_ok(), "{fits:?}");
    // Tensor API: wrong rank and T = 0.
    let x = Tensor::zeros((2, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.forward(&x, None).unwrap_err().code(), "INVALID_INPUT");
    let x = Tensor::zeros((2, 0, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.forward(&x, None).unwrap_err().code(), "INVALID_INPUT");
}

#[test]
fn batch_zero_returns_empty_of_the_right_shape() {
    let model = GqaModel::new(small_cfg(OutputMode::LastTimestep)).unwrap();
    assert_eq!(
        model.forward_f32(&[], &[0, 5, 6], None).unwrap(),
        (vec![], vec![0, 16])
    );
    let all = GqaModel::new(small_cfg(OutputMode::All)).unwrap();
    assert_eq!(
        all.forward_f32(&[], &[0, 5, 6], None).unwrap(),
        (vec![], vec![0, 5, 16])
    );
    let x = Tensor::zeros((0, 5, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.forward(&x, None).unwrap().dims(), &[0, 16]);
}

#[test]
fn output_modes_relate_to_all() {
    let (b, t, e, h) = (2, 5, 6, 16);
    let x = pseudo(b * t * e, 11);
    let (all, _) = GqaModel::new(small_cfg(OutputMode::All))
        .unwrap()
        .forward_f32(&x, &[b, t, e], None)
        .unwrap();
    let (last, _) = GqaModel::new(small_cfg(OutputMode::LastTimestep))
        .unwrap()
        .forward_f32(&x, &[b, t, e], None)
        .unwrap();
    let (mean, _) = GqaModel::new(small_cfg(OutputMode::MeanPool))
        .unwrap()
        .forward_f32(&x, &[b, t, e], None)
        .unwrap();
    for bi in 0..b {
        for c in 0..h {
            // last_timestep skips the work only other positions need (query, out_proj, FFN of
            // the last block elsewhere): equal to `all` up to float reassociation.
            assert!(
                (last[bi * h + c] - all[(bi * t + t - 1) * h + c]).abs() <= 1e-6,
                "{} vs {}",
                last[bi * h + c],
                all[(bi * t + t - 1) * h + c]
            );
            let m: f32 = (0..t).map(|p| all[(bi * t + p) * h + c]).sum::<f32>() / t as f32;
            assert!((mean[bi * h + c] - m).abs() < 1e-5);
        }
    }
}

#[test]
fn dropout_is_seeded_inverted_and_inactive_at_inference() {
    let x = Tensor::ones((1000,), candle_core::DType::F32, &Device::Cpu).unwrap();
    let mut d1 = Dropout::new(0.25, 7).unwrap();
    let mut d2 = Dropout::new(0.25, 7).unwrap();
    let a = d1.apply(&x).unwrap().to_vec1::<f32>().unwrap();
    let b = d2.apply(&x).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b);
    let kept = a.iter().filter(|&&v| v != 0.0).count();
    assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    assert!(
        (kept as f64 - 750.0).abs() < 5.0 * (1000.0f64 * 0.25 * 0.75).sqrt(),
        "kept {kept}"
    );
    assert!(Dropout::new(1.0, 0).is_err());
    // Model: forward_t with dropout differs from inference; forward_t with None equals forward.
    let model = GqaModel::new(small_cfg(OutputMode::LastTimestep)).unwrap();
    let xt = Tensor::from_vec(pseudo(2 * 4 * 6, 1), (2, 4, 6), &Device::Cpu).unwrap();
    let inf = model
        .forward(&xt, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let t0 = model
        .forward_t(&xt, None, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    // Inference runs the fused CPU kernels, training the differentiable candle ops: equal to
    // f32 rounding (kernels.rs checks the kernels themselves).
    let worst = inf
        .iter()
        .zip(&t0)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-5,
        "forward vs forward_t(None): max abs diff {worst}"
    );
    let mut d = Dropout::new(0.5, 1).unwrap();
    let td = model
        .forward_t(&xt, None, Some(&mut d))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(td.iter().zip(&inf).any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn forward_t_gradients_match_finite_differences() {
    // Every parameter tensor of a 2-layer model (rotary, padded batch, mean_pool): autograd against
    // central finite differences at its largest-|g| entry and two random entries with |g| >= 1/4
    // of that. The loss sum(out * target) is summed in f64 on the host. Tolerance
    // |fd - g| <= ATOL + RTOL * |fd| with ATOL = 1e-4, RTOL = 2e-3: f32 forward noise (~1e-7 per
    // output, divided by 2 * eps = 2e-2) stays near 1e-5, and the O(eps^2) truncation of the
    // central difference was measured at most 2.0e-4 relative over the 108 entries (10x margin).
    // A gradient wrong by 1 % (a missed scale, a dropped term) fails; the old `2e-2 * (1 + |g|)`
    // let a sign error through whenever |g| < 1e-2. Each checked entry must be large enough that
    // -g (a sign error), 2g and g/2 (factor-2 errors) fail the same tolerance.
    const EPS: f32 = 1e-2;
    const ATOL: f64 = 1e-4;
    const RTOL: f64 = 2e-3;
    let model = GqaModel::new(small_cfg(OutputMode::MeanPool)).unwrap();
    let x = Tensor::from_vec(pseudo(2 * 4 * 6, 3), (2, 4, 6), &Device::Cpu).unwrap();
    let lengths = [4usize, 2];
    let target_v = pseudo(2 * 16, 4);
    let target = Tensor::from_vec(target_v.clone(), (2, 16), &Device::Cpu).unwrap();
    let grads = (model.forward_t(&x, Some(&lengths), None).unwrap() * &target)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let loss64 = |m: &GqaModel| -> f64 {
        let out = m
            .forward_t(&x, Some(&lengths), None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        out.iter()
            .zip(&target_v)
            .map(|(&o, &t)| o as f64 * t as f64)
            .sum()
    };
    let within = |fd: f64, g: f64| (fd - g).abs() <= ATOL + RTOL * fd.abs();
    let mut rng = common::Rng::new(11);
    let (mut worst, mut worst_abs, mut min_g) = ((0f64, String::new()), 0f64, f64::INFINITY);
    let names: Vec<String> = model.params().iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        names.len(),
        2 + 2 * 16 + 2,
        "input_projection, 2 blocks of 16 tensors, final_norm"
    );
    for name in &names {
        let var = model.params().get(name).unwrap();
        let g = grads
            .get(var)
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let gmax = g.iter().map(|v| v.abs()).fold(0f32, f32::max);
        let big: Vec<usize> = (0..g.len()).filter(|&i| g[i].abs() >= gmax / 4.0).collect();
        let top = (0..g.len())
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        let orig = var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for idx in [top, big[rng.below(big.len())], big[rng.below(big.len())]] {
            let mut p = orig.clone();
            p[idx] = orig[idx] + EPS;
            var.set(&Tensor::from_vec(p.clone(), var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let lp = loss64(&model);
            p[idx] = orig[idx] - EPS;
            var.set(&Tensor::from_vec(p, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let lm = loss64(&model);
            var.set(&Tensor::from_vec(orig.clone(), var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            // The step actually taken in f32 (orig +- EPS rounds).
            let h = (orig[idx] + EPS) as f64 - (orig[idx] - EPS) as f64;
            let fd = (lp - lm) / h;
            let gi = g[idx] as f64;
            assert!(
                within(fd, gi),
                "{name}[{idx}]: finite difference {fd:.6e} vs autograd {gi:.6e}"
            );
            assert!(
                !within(fd, -gi) && !within(fd, 2.0 * gi) && !within(fd, 0.5 * gi),
                "{name}[{idx}]: |g| = {gi:.3e} too small to tell a sign or factor-2 error"
            );
            let rel = (fd - gi).abs() / gi.abs();
            worst_abs = worst_abs.max((fd - gi).abs());
            min_g = min_g.min(gi.abs());
            if rel > worst.0 {
                worst = (rel, format!("{name}[{idx}]: fd {fd:.6e} vs grad {gi:.6e}"));
            }
        }
    }
    println!("{} entries; worst |fd - grad| = {worst_abs:.2e}; worst relative {:.2e} at {}; smallest |grad| checked {min_g:.2e}", 3 * names.len(), worst.0, worst.1);
}

#[test]
fn attention_mask_keeps_key_zero_and_respects_lengths() {
    let m = gqa_core::Mask::padded(3, Some(&[2, 1]));
    let open: Vec<bool> = (0..2)
        .flat_map(|b| (0..3).flat_map(move |i| (0..3).map(move |j| (b, i, j))))
        .map(|(b, i, j)| m.visible(b, i, j))
        .collect();
    #[rustfmt::skip]
    let want = [true, false, false,  true, true, false,  true, true, false,
                true, false, false,  true, false, false, true, false, false];
    assert_eq!(open, want);
    // With an offset (KV cache): query 0 at position 2 sees keys 0..=2.
    let m = gqa_core::Mask::causal(2, 4, None);
    assert_eq!(
        (0..4).map(|j| m.visible(0, 0, j)).collect::<Vec<_>>(),
        [true, true, true, false]
    );
    assert_eq!(m.keys_for(0, 0), 0..3);
}

#[test]
fn nan_and_infinity_are_refused_at_valid_positions_only() {
    let model = GqaModel::new(small_cfg(OutputMode::All)).unwrap();
    let e = model.config().embed_dim;
    let (b, t) = (2, 4);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut x = pseudo(b * t * e, 9);
        x[(t + 2) * e + 1] = bad; // input[1, 2, 1]
        match model.forward_f32(&x, &[b, t, e], None).unwrap_err() {
            Error::InvalidInput { what, found, .. } => {
                assert_eq!(what, "input[1, 2, 1]");
                assert_eq!(found, bad.to_string());
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        // Padded (row 1 has 2 valid positions): not read, same as zeros there.
        let (y, _) = model.forward_f32(&x, &[b, t, e], Some(&[4, 2])).unwrap();
        let mut z = x.clone();
        z[(t + 2) * e + 1] = 0.0;
        let (y0, _) = model.forward_f32(&z, &[b, t, e], Some(&[4, 2])).unwrap();
        assert_eq!(y, y0);
    }
}
