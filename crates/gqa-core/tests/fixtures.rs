//! Every `fixtures/*.safetensors` of kind `model` or `attention` (written by the independent
//! float64 PyTorch reference `scripts/gen_fixtures.py`) is loaded through the library's own
//! loader (non-strict: the `input.*` / `expected.*` tensors must be ignored), run on
//! `input.x` / `input.lengths`, and compared with `expected.out`: max abs error <= 1e-4.

use std::path::PathBuf;

use gqa_core::{read_tensors, GqaAttention, GqaModel, LoadOptions};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn fixture_kind(meta: &std::collections::HashMap<String, String>) -> String {
    let fx: serde_json::Value = serde_json::from_str(meta.get("gqa_fixture").expect("gqa_fixture metadata")).unwrap();
    fx["kind"].as_str().unwrap().to_string()
}

#[test]
fn all_model_and_attention_fixtures_match_the_pytorch_reference() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixtures/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    let mut checked = 0;
    let mut report = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let (tensors, meta) = read_tensors(&bytes).unwrap();
        let kind = fixture_kind(&meta);
        if kind != "model" && kind != "attention" {
            continue;
        }
        let get = |n: &str| tensors.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone());
        let x = get("input.x").expect("input.x");
        let dims = x.dims().to_vec();
        let data = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let lengths: Option<Vec<usize>> = get("input.lengths").map(|t| t.to_vec1::<i64>().unwrap().into_iter().map(|l| l as usize).collect());
        let expected = get("expected.out").expect("expected.out");
        let (out, out_dims) = if kind == "model" {
            let model = GqaModel::from_safetensors(&bytes, &LoadOptions::default()).unwrap();
            model.forward_f32(&data, &dims, lengths.as_deref()).unwrap()
        } else {
            let layer = GqaAttention::from_safetensors(&bytes, None, &LoadOptions::default()).unwrap();
            layer.forward_f32(&data, &dims, lengths.as_deref()).unwrap()
        };
        assert_eq!(out_dims, expected.dims(), "{}: output dims", path.display());
        let want = expected.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let err = out.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(out.iter().all(|v| v.is_finite()), "{}: non-finite output", path.display());
        report.push(format!("{:<28} {kind:<9} max_abs_err = {err:.3e}", path.file_name().unwrap().to_string_lossy()));
        assert!(err <= 1e-4, "{}: max abs error {err:e} > 1e-4", path.display());
        checked += 1;
    }
    for r in &report {
        println!("{r}");
    }
    assert!(checked >= 20, "expected at least 20 model/attention fixtures, checked {checked}");
}
