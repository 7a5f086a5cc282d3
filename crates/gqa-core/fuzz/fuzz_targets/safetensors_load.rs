//! Any bytes given to the safetensors loaders (model, model + task head, standalone attention
//! layer): an error or a model, never a panic, an out-of-bounds access or an allocation past
//! the memory budget. A model that loads runs one small forward pass, which must be finite.
#![no_main]
use gqa_core::train::TaskModel;
use gqa_core::{GqaAttention, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Crafted configs may ask for huge models: the budget must refuse them before allocating.
    // 64 MiB keeps the runs fast and inside libFuzzer's 2 GiB RSS limit.
    gqa_core::memory::set_limit(Some(64 << 20)).unwrap();
    for strict in [false, true] {
        let opts = LoadOptions { strict, ..LoadOptions::default() };
        if let Ok(task) = TaskModel::from_safetensors(data, &opts) {
            let cfg = task.model.config();
            let e = cfg.embed_dim;
            if cfg.param_count_exact() < 1 << 20 && e <= 4096 {
                let x: Vec<f32> = (0..3 * e).map(|i| (i as f32 * 0.37).sin()).collect();
                let (y, _) = task.model.forward_f32(&x, &[1, 3, e], None).expect("forward of a loaded model");
                // Weights are checked finite on load, inputs are finite: so must the output be.
                assert!(y.iter().all(|v| v.is_finite()), "non-finite output from a loaded model");
            }
        }
        let _ = GqaAttention::from_safetensors(data, None, &opts);
    }
    assert_eq!(gqa_core::memory::in_use(), 0, "memory budget not released");
});
