//! Models placed on a device and dtype ([`gqa_core::Placement`]) on the CPU, where CI runs:
//! bf16 inference within 2e-2 of f32 (forwards, sessions), the CPU in f32 sharing the weights,
//! saving a bf16 model as f32, training refused in bf16, CUDA refused by a build without it.
//! The same checks run on a GPU in `tests/cuda.rs`.

use gqa_core::device::{DeviceKind, Precision};
use gqa_core::train::{FitOptions, HeadConfig, Labels, TaskModel, TrainData, Trainer};
use gqa_core::{Error, GqaModel, OutputMode, Placement, PlacementOptions};

mod common;
#[path = "common/placement.rs"]
mod placement;
use common::pseudo;
use placement::{check_forward, check_session, check_training, config};

fn bf16_cpu() -> Placement {
    Placement::open(&PlacementOptions {
        device: DeviceKind::Cpu,
        dtype: Precision::Bf16,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn bf16_forwards_are_within_2e_2_of_f32_and_not_equal_to_it() {
    let worst = check_forward(&bf16_cpu(), 2e-2);
    println!("bf16 on the CPU: forward worst rel err {worst:.3e}");
    // The weights really are rounded: an f32 run would agree to ~1e-6.
    assert!(
        worst > 1e-4,
        "bf16 forward equals f32 ({worst:e}): the weights were not converted"
    );
}

#[test]
fn bf16_runs_the_pytorch_fixtures_within_2e_2_of_their_largest_output() {
    let (n, worst) = placement::check_fixtures(&bf16_cpu(), 0.0, 2e-2);
    println!("bf16 on the CPU: {n} fixtures, worst error {worst:.3e} of max |out|");
    assert!(n >= 21);
}

#[test]
fn bf16_sessions_equal_full_forwards_on_the_same_placement() {
    check_session(&bf16_cpu(), 1e-4);
}

#[test]
fn cpu_f32_placement_shares_the_weights_and_engine() {
    let m = GqaModel::new(config(OutputMode::LastTimestep, false)).unwrap();
    let p = m.placed(&Placement::cpu()).unwrap();
    assert_eq!(p.engine().name(), "fused");
    let a = m.params().iter().next().unwrap().1.as_tensor().clone();
    let b = p.params().iter().next().unwrap().1.as_tensor().clone();
    assert_eq!(
        a.id(),
        b.id(),
        "placing on the CPU in f32 copied the weights"
    );
    let q = m.placed(&bf16_cpu()).unwrap();
    assert_eq!(q.engine().name(), "reference");
    assert_eq!(Placement::cpu().describe(), "cpu");
    assert_eq!(bf16_cpu().describe(), "cpu bf16");
}

#[test]
fn a_bf16_model_saves_as_f32_rounded_weights() {
    let m = TaskModel::new(config(OutputMode::MeanPool, false), None).unwrap();
    let q = m.placed(&bf16_cpu()).unwrap();
    let bytes = q.to_safetensors().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let name = "blocks.0.attn.q_proj.weight";
    let view = st.tensor(name).unwrap();
    assert_eq!(view.dtype(), safetensors::Dtype::F32);
    let saved: Vec<f32> = view
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let orig = m
        .model
        .params()
        .get(name)
        .unwrap()
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (s, o) in saved.iter().zip(&orig) {
        assert_eq!(
            *s,
            half::bf16::from_f32(*o).to_f32(),
            "{name}: {s} is not bf16({o})"
        );
    }
}

#[test]
fn training_a_bf16_model_is_an_invalid_option_naming_dtype() {
    let head = HeadConfig::Classification {
        num_classes: 2,
        class_weights: None,
    };
    let m = TaskModel::new(config(OutputMode::MeanPool, false), Some(head)).unwrap();
    let q = m.placed(&bf16_cpu()).unwrap();
    let data = TrainData::new(
        pseudo(2 * 4 * 12, 3),
        &[2, 4, 12],
        None,
        Labels::Classes(vec![0, 1]),
    )
    .unwrap();
    match Trainer::new(&q, data, FitOptions::default()) {
        Err(Error::InvalidOption { option, found, .. }) => {
            assert_eq!(option, "dtype");
            assert!(found.contains("bf16"), "{found}");
        }
        other => panic!("expected INVALID_OPTION dtype, got {other:?}"),
    }
}

#[test]
fn the_training_check_holds_for_the_same_weights_on_the_cpu() {
    // The harness tests/cuda.rs uses: two runs from the same weights agree step by step.
    let worst = check_training(&Placement::cpu(), 8, 1e-6);
    assert!(worst <= 1e-6);
}

#[test]
#[cfg(not(feature = "cuda"))]
fn opening_cuda_without_the_cuda_feature_is_a_backend_error_naming_the_device() {
    let e = Placement::open(&PlacementOptions {
        device: DeviceKind::Cuda,
        ..Default::default()
    })
    .unwrap_err();
    match e {
        Error::Backend(detail) => assert!(detail.starts_with("cannot open cuda:0"), "{detail}"),
        other => panic!("expected BACKEND, got {other:?}"),
    }
}

#[test]
fn placement_options_name_the_bad_field() {
    let e = PlacementOptions::from_value(serde_json::json!({"dtype": "f16"})).unwrap_err();
    assert!(
        matches!(e, Error::InvalidOption { ref option, .. } if option == "dtype"),
        "{e:?}"
    );
    let p = PlacementOptions::from_value(
        serde_json::json!({"device": "cuda", "ordinal": 1, "dtype": "bf16"}),
    )
    .unwrap();
    assert_eq!(
        (p.device, p.ordinal, p.dtype),
        (DeviceKind::Cuda, 1, Precision::Bf16)
    );
}
