//! Any bytes given to the safetensors loaders (model, model + task head, standalone attention
//! layer): an error or a model, never a panic, an out-of-bounds access or an allocation past
//! the memory budget. A model that loads runs one small forward pass.
#![no_main]
use gqa_core::train::TaskModel;
use gqa_core::{GqaAttention, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Crafted configs may ask for huge models: the budget must refuse them before allocating.
    // 64 MiB keeps the runs fast and inside libFuzzer's 2 GiB RSS limit.
    gqa_core::memory::set_limit(Some(64 << 20)).unwrap();
    for strict in [false, true] {
        let opts = LoadOptions {
            strict,
            ..LoadOptions::default()
        };
        if let Ok(task) = TaskModel::from_safetensors(data, &opts) {
            let cfg = task.model.config();
            let e = cfg.embed_dim;
            if cfg.param_count_exact() < 1 << 20 && e <= 4096 {
                let x: Vec<f32> = (0..3 * e).map(|i| (i as f32 * 0.37).sin()).collect();
                // Must run. (Its output may overflow to inf: finite weights such as 1e37, which a
                // loader must accept, overflow float32 arithmetic, as they would in PyTorch.)
                let (y, dims) = task
                    .model
                    .forward_f32(&x, &[1, 3, e], None)
                    .expect("forward of a loaded model");
                assert_eq!(y.len(), dims.iter().product::<usize>());
            }
        }
        let _ = GqaAttention::from_safetensors(data, None, &opts);
    }
    assert_eq!(gqa_core::memory::in_use(), 0, "memory budget not released");
});
