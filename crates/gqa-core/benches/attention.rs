//! Attention core alone: the reference candle kernel (scores `[B,NH,T,T]`, additive mask,
//! softmax, PV) vs the fused CPU kernel (`kernels::fused::attention`), causal, no padding
//! (`cargo bench -p gqa-core --bench attention`). Same inputs and output layout `[B,NH,T,D]`.

use std::hint::black_box;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gqa_core::kernels::{fused, reference};
use gqa_core::Mask;

#[path = "../tests/common/mod.rs"]
mod common;
use common::pseudo;

fn case(c: &mut Criterion, name: &str, b: usize, nh: usize, nkv: usize, t: usize, d: usize) {
    let dev = Device::Cpu;
    let q = Tensor::from_vec(pseudo(b * nh * t * d, 1), (b, nh, t, d), &dev).unwrap();
    let k = Tensor::from_vec(pseudo(b * nkv * t * d, 2), (b, nkv, t, d), &dev).unwrap();
    let v = Tensor::from_vec(pseudo(b * nkv * t * d, 3), (b, nkv, t, d), &dev).unwrap();
    let mask = Mask::padded(t, None);
    let scale = 1.0 / (d as f64).sqrt();
    let mut g = c.benchmark_group(format!("attention/{name}"));
    g.throughput(Throughput::Elements((b * t) as u64));
    g.sample_size(10);
    g.bench_function("reference", |bn| {
        bn.iter(|| black_box(reference::attention(&q, &k, &v, &mask, scale).unwrap()))
    });
    g.bench_function("fused", |bn| {
        bn.iter(|| black_box(fused::attention(&q, &k, &v, scale, &mask, false).unwrap()))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    case(c, "b32_t60_8x2_d32", 32, 8, 2, 60, 32);
    case(c, "b1_t2048_16x4_d32", 1, 16, 4, 2048, 32);
}

criterion_group!(attention, benches);
criterion_main!(attention);
