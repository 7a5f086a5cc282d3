//! Every `fixtures/*.safetensors` of kind `model` or `attention` (written by the independent
//! float64 PyTorch reference `scripts/gen_fixtures.py`) is loaded through the library's own
//! loader (non-strict: the `input.*` / `expected.*` tensors must be ignored), run on
//! `input.x` / `input.lengths`, and compared with `expected.out`: max abs error <= 1e-5 (the
//! reference is float64 from float32-exact inputs; measured errors are about 1e-6).

use gqa_core::{read_tensors, GqaModel, LoadOptions, Placement};

mod common;
#[path = "common/placement.rs"]
mod placement;
use common::max_abs_diff;
use placement::{check_fixtures, fixture_dir, fixture_kind};

const TOL: f32 = 1e-5;

#[test]
fn all_model_and_attention_fixtures_match_the_pytorch_reference() {
    let (checked, _) = check_fixtures(&Placement::cpu(), TOL, 0.0);
    assert!(
        checked >= 21,
        "expected at least 21 model/attention fixtures, checked {checked}"
    );
}

/// The fixture at realistic size, on its own so that its absence fails by name: GQA 8/2 (head_dim
/// 32), rope, hidden 256, T = 130 (the fused attention's online softmax over three 64-key blocks,
/// the last one holding 2 keys) with a padded row of length 77, every position compared.
#[test]
fn long_fixture_t130_h256_gqa_8_2_rope_matches_the_pytorch_reference() {
    let path = fixture_dir().join("long_rope_8_2.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (generate it with scripts/gen_fixtures.py)",
            path.display()
        )
    });
    let (tensors, meta) = read_tensors(&bytes).unwrap();
    assert_eq!(fixture_kind(&meta), "model");
    let get = |n: &str| {
        tensors
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    let model = GqaModel::from_safetensors(&bytes, &LoadOptions::default()).unwrap();
    let c = model.config();
    assert_eq!(
        (
            c.hidden_size,
            c.num_heads,
            c.num_kv_heads,
            c.rope,
            c.embed_dim
        ),
        (256, 8, 2, true, 12)
    );
    let x = get("input.x");
    assert_eq!(x.dims(), &[2, 130, 12]);
    let lengths: Vec<usize> = get("input.lengths")
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|l| l as usize)
        .collect();
    assert_eq!(lengths, [130, 77]);
    let data = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (out, dims) = model.forward_f32(&data, x.dims(), Some(&lengths)).unwrap();
    assert_eq!(dims, [2, 130, 256]);
    let want = get("expected.out")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let err = max_abs_diff(&out, &want);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    println!("long_rope_8_2: max abs err {err:.3e} (max |expected| {scale:.3})");
    assert!(err <= TOL, "long_rope_8_2: max abs error {err:e} > {TOL:e}");
    // Row 1's padded positions are exact zeros (outputMode all), not merely small.
    assert!(out[(130 + 77) * 256..].iter().all(|&v| v == 0.0));
}
