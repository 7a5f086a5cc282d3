//! The model on a CUDA GPU (candle's CUDA backend; feature `cuda`): the PyTorch fixtures, and
//! against the same weights on the CPU in f32: forwards of every output mode in f32 (<= 1e-4) and bf16 (<= 2e-2), sessions
//! equal to full forwards on the GPU, and 20 training steps whose loss curve matches the CPU's
//! (<= 1e-3 relative). Needs a GPU: built by `scripts/gpu-check.sh` here (`--no-run`) and run on
//! the GPU machine; without the feature this file is empty.
#![cfg(feature = "cuda")]

use gqa_core::device::{DeviceKind, Precision};
use gqa_core::{Placement, PlacementOptions};

mod common;
#[path = "common/placement.rs"]
mod placement;
use placement::{check_fixtures, check_forward, check_session, check_training};

fn gpu(dtype: Precision) -> Placement {
    Placement::open(&PlacementOptions {
        device: DeviceKind::Cuda,
        ordinal: 0,
        dtype,
    })
    .expect("a CUDA GPU at index 0")
}

#[test]
fn cuda_runs_the_pytorch_fixtures_within_1e_4_in_f32_and_2e_2_relative_in_bf16() {
    let (n, worst) = check_fixtures(&gpu(Precision::F32), 1e-4, 0.0);
    println!("cuda f32: {n} PyTorch fixtures, worst error {worst:.3e} of max |out|");
    assert!(n >= 21, "expected at least 21 fixtures, found {n}");
    let (_, worst) = check_fixtures(&gpu(Precision::Bf16), 0.0, 2e-2);
    println!("cuda bf16: worst error {worst:.3e} of max |out|");
}

#[test]
fn cuda_f32_forwards_match_the_cpu_within_1e_4() {
    let worst = check_forward(&gpu(Precision::F32), 1e-4);
    println!("cuda f32 forward: worst rel err {worst:.3e}");
}

#[test]
fn cuda_bf16_forwards_match_the_cpu_within_2e_2() {
    let worst = check_forward(&gpu(Precision::Bf16), 2e-2);
    println!("cuda bf16 forward: worst rel err {worst:.3e}");
}

#[test]
fn cuda_sessions_equal_full_forwards_on_the_gpu() {
    for dtype in [Precision::F32, Precision::Bf16] {
        let worst = check_session(&gpu(dtype), 1e-4);
        println!("cuda {dtype:?} session: worst rel err {worst:.3e}");
    }
}

#[test]
fn cuda_training_follows_the_cpu_loss_curve_for_20_steps() {
    let worst = check_training(&gpu(Precision::F32), 20, 1e-3);
    println!("cuda training: worst loss rel diff {worst:.3e} over 20 steps");
}
