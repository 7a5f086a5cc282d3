//! Rotary embeddings (SPEC section 5).

use candle_core::{Device, Tensor};
use gqa_core::rope::{edifice_yarn_inv_freq_f64, inv_freq_for, rope_inv_freq_f64};
use gqa_core::Rotary;

mod common;
use common::pseudo;

#[test]
fn plain_inv_freq_is_base_pow() {
    let f = rope_inv_freq_f64(8);
    let want = [1.0, 0.1, 0.01, 0.001]; // 10000^(-2i/8) = 10^(-i)
    for (a, b) in f.iter().zip(want) {
        assert!((a - b).abs() < 1e-15 * b.max(1e-3) * 10.0, "{a} vs {b}");
    }
}

#[test]
fn rotary_at_position_zero_is_identity() {
    let dev = Device::Cpu;
    let inv = inv_freq_for(8, true, false, 8.0, 2048).unwrap();
    let rot = Rotary::new(&inv, 4, &dev).unwrap();
    let data = pseudo(2 * 3 * 8, 1);
    let x = Tensor::from_vec(data.clone(), (2, 3, 1, 8), &dev).unwrap();
    let y = rot
        .apply(&x, 0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(y, data);
    // Position 1 is not the identity (so the test above can tell).
    let y1 = rot
        .apply(&x, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(y1.iter().zip(&data).any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn rotary_uses_half_rotation_pairs() {
    // x = e_0 (first element of the first half) at position p rotates into (cos, .., sin, ..)
    // on indices 0 and D/2: out[0] = cos(p*f0), out[D/2] = sin(p*f0).
    let dev = Device::Cpu;
    let inv = inv_freq_for(8, true, false, 8.0, 2048).unwrap();
    let rot = Rotary::new(&inv, 8, &dev).unwrap();
    let mut v = vec![0f32; 8];
    v[0] = 1.0;
    let x = Tensor::from_vec(v, (1, 1, 1, 8), &dev).unwrap();
    let y = rot
        .apply(&x, 3)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(
        (y[0] - 3f32.cos()).abs() < 1e-6 && (y[4] - 3f32.sin()).abs() < 1e-6,
        "{y:?}"
    );
    assert!(y[1].abs() < 1e-7 && y[5].abs() < 1e-7);
}

fn dot_at(rot: &Rotary, q: &Tensor, k: &Tensor, m: usize, n: usize) -> f32 {
    let qm = rot
        .apply(q, m)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let kn = rot
        .apply(k, n)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    qm.iter().zip(&kn).map(|(a, b)| a * b).sum()
}

#[test]
fn q_dot_k_depends_only_on_position_difference() {
    let dev = Device::Cpu;
    for (rope, yarn) in [(true, false), (false, true)] {
        let inv = inv_freq_for(16, rope, yarn, 8.0, 64).unwrap();
        let rot = Rotary::new(&inv, 300, &dev).unwrap();
        let q = Tensor::from_vec(pseudo(16, 2), (1, 1, 1, 16), &dev).unwrap();
        let k = Tensor::from_vec(pseudo(16, 3), (1, 1, 1, 16), &dev).unwrap();
        let base = dot_at(&rot, &q, &k, 5, 2);
        for (m, n) in [(3, 0), (13, 10), (103, 100), (250, 247)] {
            let d = dot_at(&rot, &q, &k, m, n);
            assert!(
                (d - base).abs() < 2e-4,
                "rope={rope} yarn={yarn} ({m},{n}): {d} vs {base}"
            );
        }
        // A different distance gives a different product.
        let other = dot_at(&rot, &q, &k, 7, 2);
        assert!((other - base).abs() > 1e-2, "{other} vs {base}");
    }
}

#[test]
fn yarn_inv_freq_matches_a_direct_computation() {
    // Direct: headDim 16, orig 64, scale 8. The fixture README lists the ramps
    // [0, 0.0806, 0.9757, 1, 1, 1, 1, 1] for exactly this case.
    let d = 16usize;
    let (scale, orig) = (8.0f64, 64usize);
    let got = edifice_yarn_inv_freq_f64(d, scale, orig);
    let ramps_readme = [0.0, 0.0806, 0.9757, 1.0, 1.0, 1.0, 1.0, 1.0];
    for i in 0..d / 2 {
        let f = 10000f64.powf(-(2.0 * i as f64) / d as f64);
        let wavelen = 2.0 * std::f64::consts::PI / f;
        let ramp =
            ((wavelen - orig as f64 / 4.0) / (orig as f64 - orig as f64 / 4.0)).clamp(0.0, 1.0);
        let want = f * (ramp / scale + 1.0 - ramp);
        assert!(
            (got[i] - want).abs() <= 1e-15 * want,
            "i={i}: {} vs {want}",
            got[i]
        );
        // The ramp recovered from the ratio agrees with the README's figures.
        let ramp_back = (1.0 - got[i] / f) / (1.0 - 1.0 / scale);
        assert!(
            (ramp_back - ramps_readme[i]).abs() < 1e-4,
            "i={i}: ramp {ramp_back}"
        );
    }
    // orig 4: every wavelength (>= 2*pi) exceeds lowWav, so every frequency is divided by 8.
    let all = edifice_yarn_inv_freq_f64(8, 8.0, 4);
    for (a, f) in all.iter().zip(rope_inv_freq_f64(8)) {
        assert!((a - f / 8.0).abs() < 1e-18 + 1e-15 * f);
    }
    // f32 tables are the f64 values rounded.
    let f32s = inv_freq_for(16, false, true, scale, orig).unwrap();
    for (a, b) in f32s.iter().zip(&got) {
        assert_eq!(*a, *b as f32);
    }
}

#[test]
fn apply_rejects_positions_beyond_the_tables() {
    let dev = Device::Cpu;
    let inv = inv_freq_for(8, true, false, 8.0, 2048).unwrap();
    let rot = Rotary::new(&inv, 4, &dev).unwrap();
    let x = Tensor::zeros((1, 1, 3, 8), candle_core::DType::F32, &dev).unwrap();
    assert!(rot.apply(&x, 1).is_ok());
    assert_eq!(rot.apply(&x, 2).unwrap_err().code(), "INVALID_INPUT");
}
