//! Allocation, budget and validation rules: every large buffer is accounted before
//! it is allocated (heads, headDim-wide activations, loading), huge counts are refused before
//! anything is built, model building is linear in `numLayers`, rotary options that make
//! non-finite tables are refused, and loading checks a file's header before allocating.
//!
//! The memory budget is process-wide: the tests here take one lock so none of them sees
//! another's limit.

use std::sync::Mutex;
use std::time::Instant;

use gqa_core::memory;
use gqa_core::train::{HeadConfig, TaskModel};
use gqa_core::{Error, GqaConfig, GqaModel, LoadOptions};
use serde_json::json;

static BUDGET: Mutex<()> = Mutex::new(());

/// The budget lock; the limit goes back to the default when it is released (a failing test
/// must not leave its limit to the next).
struct Budget(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

impl Drop for Budget {
    fn drop(&mut self) {
        memory::set_limit(None).unwrap();
    }
}

fn lock() -> Budget {
    Budget(
        BUDGET
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

fn small(hidden: usize, layers: usize) -> GqaConfig {
    GqaConfig {
        hidden_size: hidden,
        num_heads: 2,
        num_kv_heads: 1,
        num_layers: layers,
        dropout: 0.0,
        ..GqaConfig::new(hidden)
    }
}

fn oom(e: Error) -> (String, u64, u64) {
    match e {
        Error::OutOfMemory {
            what,
            requested,
            limit,
            ..
        } => (what, requested, limit),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
}

fn option_name(e: Error) -> String {
    match e {
        Error::InvalidOption { option, .. } => option,
        other => panic!("expected InvalidOption, got {other:?}"),
    }
}

/// Peak resident memory of this process (`VmHWM`), bytes; 0 where there is no /proc.
fn vm_hwm() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024)
}

#[test]
fn a_head_of_2_pow_31_classes_is_out_of_memory_naming_its_weight_not_an_abort() {
    let _g = lock();
    let head = HeadConfig::Classification {
        num_classes: 1 << 31,
        class_weights: None,
    };
    let before = memory::in_use();
    let (what, requested, _) = oom(TaskModel::new(small(8, 1), Some(head)).unwrap_err());
    assert_eq!(what, "head.weight");
    assert_eq!(requested, (1u64 << 31) * 8 * 4);
    assert_eq!(memory::in_use(), before, "the refused model holds nothing");

    // A head that can exist but does not fit next to the model is refused by the budget.
    let cfg = small(8, 1);
    memory::set_limit(Some(before + (8 << 20))).unwrap();
    let _held = memory::reserve("other objects", 6 << 20).unwrap();
    let head = HeadConfig::Classification {
        num_classes: 1 << 17,
        class_weights: None,
    };
    let e = TaskModel::new(cfg, Some(head)).unwrap_err();
    assert_eq!(oom(e).0, "head parameters");
    assert_eq!(memory::in_use(), before + (6 << 20));
}

#[test]
fn a_forward_reserves_the_headdim_wide_buffers_it_allocates() {
    let _g = lock();
    // headDim 512 with hiddenSize 8: the qkv rows are (4 + 2*2) * 512 = 4096 values wide while
    // hiddenSize is 8; 2,000 positions need ~33 MB of qkv alone.
    let cfg = GqaConfig {
        hidden_size: 8,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: Some(512),
        num_layers: 1,
        dropout: 0.0,
        ..GqaConfig::new(8)
    };
    let m = GqaModel::new(cfg).unwrap();
    let x = vec![0.25f32; 2000 * 8];
    memory::set_limit(Some(memory::in_use() + (40 << 20))).unwrap();
    let e = m.forward_f32(&x, &[1, 2000, 8], None).unwrap_err();
    let (what, requested, _) = oom(e);
    assert_eq!(what, "forward activations");
    assert!(requested > 2000 * 4096 * 4, "requested {requested}");
    // A short input fits, and is computed.
    let (y, dims) = m.forward_f32(&x[..16 * 8], &[1, 16, 8], None).unwrap();
    memory::set_limit(None).unwrap();
    assert_eq!(dims, vec![1, 8]);
    assert!(y.iter().all(|v| v.is_finite()));
}

#[test]
fn working_set_grows_with_head_dim_sessions_and_training_and_saturates() {
    use memory::{working_set, WorkDims, WorkPath};
    let d = WorkDims {
        batch: 2,
        seq: 64,
        embed: 8,
        hidden: 8,
        heads: 4,
        kv_heads: 2,
        head_dim: 2,
        layers: 3,
        outputs: 2,
        keys: 64,
    };
    let wide = WorkDims { head_dim: 512, ..d };
    for path in [
        WorkPath::Engine,
        WorkPath::Candle,
        WorkPath::CandleTracked,
        WorkPath::FusedTraining,
    ] {
        assert!(working_set(wide, path) > working_set(d, path) + 2 * 64 * 4096 * 4);
    }
    assert!(working_set(d, WorkPath::CandleTracked) > working_set(d, WorkPath::Candle));
    let huge = WorkDims {
        batch: usize::MAX,
        seq: usize::MAX,
        ..wide
    };
    assert_eq!(working_set(huge, WorkPath::Engine), u64::MAX);
    let e = memory::reserve_work("forward activations", huge, WorkPath::Engine).unwrap_err();
    assert_eq!(oom(e).0, "qkv activations");
}

#[test]
fn num_layers_is_bounded_by_the_budget_before_anything_is_built() {
    let _g = lock();
    let t0 = Instant::now();
    let e = GqaModel::new(small(2, 1_000_000_000)).unwrap_err();
    assert_eq!(oom(e).0, "parameters");
    // Tiny blocks: their parameters are few, their bookkeeping is not.
    let cfg = small(2, 100_000);
    memory::set_limit(Some(64 << 20)).unwrap();
    let e = GqaModel::new(cfg.clone()).unwrap_err();
    memory::set_limit(None).unwrap();
    let (_, requested, limit) = oom(e);
    assert!(requested > limit && cfg.param_count_exact() * 4 < limit);
    assert!(t0.elapsed().as_secs_f64() < 1.0, "refused without building");
}

#[test]
fn building_is_linear_in_num_layers() {
    let _g = lock();
    let time = |layers: usize| {
        let t0 = Instant::now();
        let m = GqaModel::new(small(4, layers)).unwrap();
        assert_eq!(m.blocks().len(), layers);
        t0.elapsed().as_secs_f64()
    };
    time(200);
    let a = time(1000);
    let b = time(8000);
    // Quadratic building (each block scanning every parameter) made 8x the layers ~64x slower.
    assert!(
        b < a * 24.0 + 0.05,
        "1000 layers {a:.3} s, 8000 layers {b:.3} s"
    );
}

#[test]
fn rotary_options_that_make_non_finite_tables_are_refused_naming_the_option() {
    let base =
        json!({"embedDim": 8, "hiddenSize": 8, "numHeads": 2, "numKvHeads": 1, "numLayers": 1});
    let with = |extra: serde_json::Value| {
        let mut v = base.clone();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        GqaConfig::from_value(v)
    };
    for (extra, name) in [
        (json!({"rope": true, "ropeTheta": 1e-320}), "ropeTheta"),
        (json!({"rope": true, "ropeTheta": 1e-300}), "ropeTheta"),
        (json!({"yarn": true, "yarnScale": 1e-300}), "yarnScale"),
        (
            json!({"rope": true, "ropeScaling": {"type": "linear", "factor": 1e-300}}),
            "ropeScaling.factor",
        ),
        (
            json!({"rope": true, "ropeScaling": {"type": "yarn", "factor": 2, "originalMaxPositionEmbeddings": 64, "attentionFactor": 1e300}}),
            "ropeScaling.attentionFactor",
        ),
    ] {
        let e = with(extra.clone()).unwrap_err();
        assert_eq!(option_name(e), name, "{extra}");
    }
    // Ordinary extremes stay valid and give finite outputs.
    for extra in [
        json!({"rope": true, "ropeTheta": 1e-3}),
        json!({"rope": true, "ropeTheta": 1e30}),
        json!({"yarn": true, "yarnScale": 1e-6}),
        json!({"rope": true, "ropeScaling": {"type": "linear", "factor": 1e-6}}),
    ] {
        let cfg = with(extra.clone()).unwrap();
        let m = GqaModel::new(cfg).unwrap();
        let (y, _) = m.forward_f32(&[0.5f32; 3 * 8], &[1, 3, 8], None).unwrap();
        assert!(y.iter().all(|v| v.is_finite()), "{extra}");
    }
}

fn file(
    tensors: Vec<(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
    meta: &[(&str, String)],
) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

#[test]
fn a_small_file_claiming_a_large_model_is_refused_before_allocating() {
    let _g = lock();
    // ~1.6 GB of parameters claimed by a file of a few hundred bytes.
    let big = GqaConfig {
        hidden_size: 4096,
        num_heads: 32,
        num_kv_heads: 8,
        num_layers: 2,
        dropout: 0.0,
        ..GqaConfig::new(4096)
    };
    let bytes = file(
        vec![(
            "blocks.0.attn_norm.weight",
            safetensors::Dtype::F32,
            vec![4],
            vec![0; 16],
        )],
        &[("gqa_config", big.to_json())],
    );
    assert!(bytes.len() < 5000);
    let hwm = vm_hwm();
    let before = memory::in_use();
    let t0 = Instant::now();
    for load in [
        |b: &[u8]| GqaModel::from_safetensors(b, &LoadOptions::default()).map(|_| ()),
        |b: &[u8]| TaskModel::from_safetensors(b, &LoadOptions::default()).map(|_| ()),
    ] {
        match load(&bytes).unwrap_err() {
            Error::TensorMismatch { name, field, .. } => {
                assert_eq!(
                    (name.as_str(), field.as_str()),
                    ("blocks.0.attn_norm.weight", "shape")
                )
            }
            other => panic!("expected TensorMismatch, got {other:?}"),
        }
    }
    assert!(t0.elapsed().as_secs_f64() < 0.5, "{:?}", t0.elapsed());
    assert_eq!(memory::in_use(), before);
    if hwm > 0 {
        assert!(
            vm_hwm() < hwm + (64 << 20),
            "peak RSS grew by {} bytes",
            vm_hwm() - hwm
        );
    }
}

#[test]
fn non_strict_loading_ignores_extra_non_parameter_tensors_of_any_dtype() {
    let _g = lock();
    let cfg = small(8, 1);
    let task = TaskModel::new(
        cfg,
        Some(HeadConfig::Classification {
            num_classes: 3,
            class_weights: None,
        }),
    )
    .unwrap();
    let saved = task.to_safetensors().unwrap();
    let st = safetensors::SafeTensors::deserialize(&saved).unwrap();
    let meta = gqa_core::read_metadata(&saved).unwrap();
    let mut tensors: Vec<(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let name: &str = Box::leak(n.into_boxed_str());
            (name, v.dtype(), v.shape().to_vec(), v.data().to_vec())
        })
        .collect();
    tensors.push((
        "step_counts",
        safetensors::Dtype::I8,
        vec![3],
        vec![1, 2, 255],
    ));
    tensors.push((
        "optimizer.flags",
        safetensors::Dtype::I16,
        vec![2],
        vec![0; 4],
    ));
    let meta: Vec<(&str, String)> = meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let bytes = file(tensors, &meta);
    let loaded = TaskModel::from_safetensors(&bytes, &LoadOptions::default()).unwrap();
    assert_eq!(
        loaded.model.weights_digest().unwrap(),
        task.model.weights_digest().unwrap()
    );
    assert!(loaded.head.is_some());
    GqaModel::from_safetensors(&bytes, &LoadOptions::default()).unwrap();
    let strict = LoadOptions {
        strict: true,
        ..LoadOptions::default()
    };
    match TaskModel::from_safetensors(&bytes, &strict).unwrap_err() {
        Error::UnexpectedParameter { name } => assert_eq!(name, "optimizer.flags"),
        other => panic!("expected UnexpectedParameter, got {other:?}"),
    }
}
