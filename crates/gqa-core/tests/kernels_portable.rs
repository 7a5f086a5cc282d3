//! The portable (non-AVX2) kernel code, forced on x86_64 for this whole test binary, against
//! the reference candle ops (the code path wasm32 builds run).

use candle_core::{Device, Tensor};
use gqa_core::kernels::{cpu, fused, reference};
use gqa_core::Mask;

mod common;
use common::{max_abs_diff, pseudo_amp};

fn vals(x: &Tensor) -> Vec<f32> {
    x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn portable_kernels_match_reference() {
    cpu::set_portable_only(true);
    let dev = Device::Cpu;
    for (b, nh, nkv, tq, tk, d, off, lengths) in [
        (
            2usize, 4usize, 2usize, 60usize, 60usize, 32usize, 0usize, None,
        ),
        (2, 4, 1, 300, 300, 40, 0, Some(vec![300usize, 71])),
        (1, 4, 4, 3, 20, 16, 17, None),
    ] {
        let q =
            Tensor::from_vec(pseudo_amp(b * nh * tq * d, 1, 2.0), (b, nh, tq, d), &dev).unwrap();
        let k =
            Tensor::from_vec(pseudo_amp(b * nkv * tk * d, 2, 2.0), (b, nkv, tk, d), &dev).unwrap();
        let v =
            Tensor::from_vec(pseudo_amp(b * nkv * tk * d, 3, 1.0), (b, nkv, tk, d), &dev).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        let mask = Mask::causal(off, tk, lengths.as_deref());
        let want = vals(&reference::attention(&q, &k, &v, &mask, scale).unwrap());
        let got = vals(&fused::attention(&q, &k, &v, scale, &mask, false).unwrap());
        let w = max_abs_diff(&want, &got);
        assert!(
            w <= 1e-5,
            "portable attention nh {nh} nkv {nkv} t {tq}: {w}"
        );
    }
    let grid: Vec<f32> = (0..24_001).map(|i| -12.0 + i as f32 * 0.001).collect();
    let want = vals(
        &Tensor::from_vec(grid.clone(), grid.len(), &dev)
            .unwrap()
            .gelu_erf()
            .unwrap(),
    );
    let mut got = grid.clone();
    cpu::bias_gelu_rows(&mut got, &[0.0]).unwrap();
    let w = max_abs_diff(&want, &got);
    assert!(w <= 1e-6, "portable GELU: {w}");
    let x = pseudo_amp(6 * 50, 4, 3.0);
    let mut ln = vec![0f32; x.len()];
    cpu::layer_norm_rows(&x, &[1.0; 50], &[0.0; 50], 1e-5, &mut ln).unwrap();
    for row in ln.chunks(50) {
        let mean: f32 = row.iter().sum::<f32>() / 50.0;
        let var: f32 = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 50.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
            "mean {mean} var {var}"
        );
    }
}
