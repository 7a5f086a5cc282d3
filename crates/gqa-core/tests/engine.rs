//! The fused CPU engine (`kernels::engine`, what `GqaModel::forward_f32` runs on the CPU) against
//! the reference candle-ops path, on randomised shapes, on every SIMD level this CPU has, and
//! for determinism across runs and thread counts.
//!
//! Everything runs in one test function: the kernel switches are process-wide.

use gqa_core::candle_core::Device;
use gqa_core::compute::Engine;
use gqa_core::kernels::cpu::{self, SimdLevel};
use gqa_core::kernels::{set_reference_kernels, threads};
use gqa_core::{GqaConfig, GqaModel, OutputMode};

mod common;
use common::{max_abs_diff, pseudo, Rng};

struct Case {
    cfg: GqaConfig,
    b: usize,
    t: usize,
    lengths: Option<Vec<usize>>,
}

fn cases() -> Vec<Case> {
    // Seed 6 draws T = 130 (three 64-key blocks; padded rows [104, 29, 60]), 65 and short T.
    let mut g = Rng::new(6);
    let mut out = Vec::new();
    // (head_dim, num_kv_heads, group) pairs covering D 8..128 and groups 1..16.
    let shapes = [
        (8, 1, 16),
        (16, 2, 4),
        (32, 2, 4),
        (64, 1, 2),
        (128, 1, 1),
        (8, 4, 1),
        (16, 1, 8),
        (24, 3, 2),
    ];
    for (i, &(d, nkv, group)) in shapes.iter().enumerate() {
        let nh = nkv * group;
        let mut cfg = GqaConfig::new([5, 12, 31][i % 3]);
        cfg.hidden_size = nh * d;
        cfg.num_heads = nh;
        cfg.num_kv_heads = nkv;
        cfg.num_layers = 1 + i % 2;
        cfg.rope = i % 2 == 0;
        cfg.yarn = i % 4 == 3;
        cfg.output_mode = [
            OutputMode::All,
            OutputMode::LastTimestep,
            OutputMode::MeanPool,
        ][i % 3];
        cfg.seed = i as u64;
        let t = [1, 2, 7, 33, 65, 130][g.below(6)];
        let b = 1 + g.below(3);
        let lengths = (i % 2 == 1).then(|| (0..b).map(|_| 1 + g.below(t)).collect());
        out.push(Case { cfg, b, t, lengths });
    }
    // The embedDim == hiddenSize case (no input projection), odd T.
    let mut cfg = GqaConfig::new(32);
    cfg.hidden_size = 32;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.num_layers = 2;
    cfg.rope = true;
    cfg.output_mode = OutputMode::LastTimestep;
    out.push(Case {
        cfg,
        b: 3,
        t: 61,
        lengths: Some(vec![61, 1, 30]),
    });
    // Sliding windows: W = 1 (each position reads itself), W inside one 64-key block, W across
    // blocks with rotary and padding (rows of the first blocks skipped), W >= T (= causal).
    for (i, (w, t, lengths)) in [
        (1, 70, None),
        (5, 130, Some(vec![130, 7])),
        (70, 200, Some(vec![200, 150])),
        (300, 130, None),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cfg = GqaConfig::new(12);
        cfg.hidden_size = 64;
        cfg.num_heads = 8;
        cfg.num_kv_heads = 2;
        cfg.num_layers = 2;
        cfg.rope = i % 2 == 0;
        cfg.sliding_window = Some(w);
        cfg.output_mode = [OutputMode::All, OutputMode::MeanPool][i % 2];
        cfg.seed = 40 + i as u64;
        let b = lengths.as_ref().map_or(2, Vec::len);
        out.push(Case { cfg, b, t, lengths });
    }
    out
}

fn run(model: &GqaModel, x: &[f32], c: &Case) -> Vec<f32> {
    model
        .forward_f32(x, &[c.b, c.t, c.cfg.embed_dim], c.lengths.as_deref())
        .unwrap()
        .0
}

#[test]
fn engine_matches_reference_on_every_simd_level_and_is_deterministic() {
    let levels: Vec<Option<SimdLevel>> = {
        set_reference_kernels(false);
        let best = cpu::simd_level();
        let mut v = vec![Some(SimdLevel::Portable)];
        if best >= SimdLevel::Avx2Fma {
            v.push(Some(SimdLevel::Avx2Fma));
        }
        if best >= SimdLevel::Avx512 {
            v.push(Some(SimdLevel::Avx512));
        }
        v
    };
    for (ci, c) in cases().iter().enumerate() {
        let model = GqaModel::new(c.cfg.clone()).unwrap();
        let x = pseudo(c.b * c.t * c.cfg.embed_dim, ci as u64);
        let reference_model = model.with_engine(Engine::Reference(Device::Cpu)).unwrap();
        let reference = run(&reference_model, &x, c);
        for &level in &levels {
            cpu::set_max_simd(level);
            let fused = run(&model, &x, c);
            let diff = max_abs_diff(&fused, &reference);
            eprintln!(
                "case {ci} (B {} T {} lengths {:?}) level {level:?}: max diff {diff:.2e}",
                c.b, c.t, c.lengths
            );
            assert!(
                diff <= 1e-5,
                "case {ci} ({:?}, B {} T {} lengths {:?}) level {level:?}: max diff {diff}",
                c.cfg.output_mode,
                c.b,
                c.t,
                c.lengths
            );
            assert!(fused.iter().all(|v| v.is_finite()));
        }
        cpu::set_max_simd(None);
    }

    // Determinism: 20 runs bitwise identical at 1 and at 2 threads, and 1 vs 2 threads bitwise.
    let mut cfg = GqaConfig::new(37);
    cfg.hidden_size = 64;
    cfg.num_heads = 8;
    cfg.num_kv_heads = 2;
    cfg.num_layers = 2;
    cfg.rope = true;
    cfg.output_mode = OutputMode::All;
    let model = GqaModel::new(cfg).unwrap();
    let (b, t) = (4, 70);
    let x = pseudo(b * t * 37, 99);
    let mut per_threads = Vec::new();
    for n in [1, 2] {
        threads::set_threads(n).unwrap();
        let first = model
            .forward_f32(&x, &[b, t, 37], Some(&[70, 3, 69, 40]))
            .unwrap()
            .0;
        for _ in 0..19 {
            let again = model
                .forward_f32(&x, &[b, t, 37], Some(&[70, 3, 69, 40]))
                .unwrap()
                .0;
            assert!(
                first
                    .iter()
                    .zip(&again)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{n} threads: runs differ"
            );
        }
        per_threads.push(first);
    }
    // Bitwise across thread counts too: work is split over output rows/tiles only.
    let same = per_threads[0]
        .iter()
        .zip(&per_threads[1])
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(
        same,
        "1 vs 2 threads differ: max {}",
        max_abs_diff(&per_threads[0], &per_threads[1])
    );
    assert!(threads::set_threads(0).is_err());
}
