//! The memory budget (`gqa_core::memory`): refusals come before any allocation, name the
//! buffer, and the bytes come back when the owner is dropped. One test function: the budget is
//! process-wide, and this binary's tests would otherwise share it in parallel.

use gqa_core::memory;
use gqa_core::train::{FitOptions, HeadConfig, Labels, TaskModel, TrainData, Trainer};
use gqa_core::{Error, GqaConfig, GqaModel};

fn cfg() -> GqaConfig {
    GqaConfig {
        hidden_size: 64,
        num_heads: 4,
        num_kv_heads: 2,
        num_layers: 2,
        dropout: 0.0,
        ..GqaConfig::new(8)
    }
}

fn oom_what(e: Error) -> String {
    match e {
        Error::OutOfMemory {
            what,
            requested,
            limit,
            in_use,
        } => {
            assert!(
                in_use + requested > limit,
                "refused a request that fits: {requested} + {in_use} <= {limit}"
            );
            what
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
}

#[test]
fn budget_refuses_before_allocating_and_returns_bytes_on_drop() {
    assert!(memory::default_limit() > 1 << 20);
    assert!(matches!(
        memory::set_limit(Some(0)),
        Err(Error::InvalidOption { .. })
    ));
    let cfg = cfg();
    let bytes = cfg.param_count_exact() * 4;
    assert_eq!(memory::in_use(), 0);

    // Room for one model and a half.
    memory::set_limit(Some(bytes + bytes / 2)).unwrap();
    let a = GqaModel::new(cfg.clone()).unwrap();
    assert_eq!(memory::in_use(), bytes);
    assert_eq!(
        oom_what(GqaModel::new(cfg.clone()).unwrap_err()),
        "parameters"
    );
    assert_eq!(memory::in_use(), bytes, "a refused model holds nothing");

    // Clones share the tensors and the reservation; the last drop returns it.
    let a2 = a.clone();
    drop(a);
    assert_eq!(memory::in_use(), bytes);
    drop(a2);
    assert_eq!(memory::in_use(), 0);
    let b = GqaModel::new(cfg.clone()).unwrap();

    // A KV cache and an input whose working buffers do not fit next to the model.
    assert_eq!(oom_what(b.session(1, 100_000).unwrap_err()), "kv cache");
    let x = vec![0.25f32; 200 * 8];
    assert_eq!(
        oom_what(b.forward_f32(&x, &[1, 200, 8], None).unwrap_err()),
        "forward activations"
    );
    assert_eq!(memory::in_use(), bytes);
    // Small ones fit, and give their bytes back when done.
    let s = b.session(1, 16).unwrap();
    assert!(memory::in_use() > bytes);
    drop(s);
    let (y, dims) = b.forward_f32(&x[..5 * 8], &[1, 5, 8], None).unwrap();
    assert_eq!((y.len(), dims), (64, vec![1, 64]));
    assert_eq!(memory::in_use(), bytes);

    // Training: gradients and AdamW moments are 3 x the parameters.
    drop(b);
    let head = HeadConfig::from_json(r#"{"type":"classification","numClasses":2}"#).unwrap();
    let task = TaskModel::new(cfg.clone(), Some(head)).unwrap();
    let held = memory::in_use();
    memory::set_limit(Some(held * 3)).unwrap();
    let data = || {
        TrainData::new(
            vec![0.5; 2 * 3 * 8],
            &[2, 3, 8],
            None,
            Labels::Classes(vec![0, 1]),
        )
        .unwrap()
    };
    let opts = FitOptions {
        epochs: 1,
        batch_size: 2,
        ..FitOptions::default()
    };
    let e = Trainer::new(&task, data(), opts.clone()).unwrap_err();
    assert!(oom_what(e).starts_with("optimiser state"));
    memory::set_limit(Some(held * 5)).unwrap();
    let mut t = Trainer::new(&task, data(), opts).unwrap();
    assert!(memory::in_use() >= held * 4, "model + 3 x (model + head)");
    t.step(&task).unwrap();
    drop(t);
    drop(task);
    assert_eq!(memory::in_use(), 0);

    // A buffer larger than the whole limit is refused by the per-buffer check as well.
    memory::set_limit(Some(1 << 20)).unwrap();
    let big = GqaConfig {
        hidden_size: 1024,
        num_heads: 8,
        ..cfg.clone()
    };
    assert!(matches!(
        GqaModel::new(big).unwrap_err(),
        Error::OutOfMemory { .. }
    ));
    assert_eq!(memory::set_limit(None).unwrap(), memory::default_limit());
}
