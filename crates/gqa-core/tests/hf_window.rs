//! Sliding-window attention (SPEC section 7) against Hugging Face transformers: attention layers
//! loaded from Mistral / Qwen2 checkpoints and `config.json`s (`sliding_window`, `layer_types`,
//! `use_sliding_window` + `max_window_layers`) against the float64 outputs of transformers'
//! MistralAttention / Qwen2Attention under the mask transformers builds for that layer
//! (fixtures of `scripts/gen_window_fixtures.py`), on the fused and the reference kernels.

mod common;

use std::path::PathBuf;

use gqa_core::kernels::set_reference_kernels;
use gqa_core::{AttentionConfig, GqaAttention};
use serde_json::{json, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf_window")
}

fn read_json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir().join(name)).unwrap()).unwrap()
}

use common::st_f32 as tensor;

fn modules() -> Vec<String> {
    let names: Vec<String> = read_json("index.json")["modules"]
        .as_array()
        .expect("index.json lists its modules")
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert!(names.len() >= 6, "index.json lists {} modules", names.len());
    names
}

#[test]
fn windowed_hf_layers_match_transformers_on_both_kernel_paths() {
    for reference in [false, true] {
        set_reference_kernels(reference);
        for name in modules() {
            let meta = read_json(&format!("{name}.json"));
            let bytes = std::fs::read(dir().join(format!("{name}.safetensors"))).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let (x, dims) = tensor(&st, "test.input");
            let (y, _) = tensor(&st, "test.output");
            let opts = json!({"hfConfig": meta["hfConfig"], "layer": meta["layer"]});
            let layer =
                GqaAttention::load_value(&bytes, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            let want_window = meta["window"].as_u64().map(|w| w as usize);
            assert_eq!(layer.config().sliding_window, want_window, "{name}");
            let (out, odims) = layer.forward_f32(&x, &dims, None).unwrap();
            assert_eq!(odims, dims);
            // Outputs reach O(30); 1e-4 absolute is ~3e-6 relative to them.
            let diff = common::max_abs_diff(&out, &y);
            let scale = y.iter().fold(1f32, |m, v| m.max(v.abs()));
            eprintln!(
                "{name} (reference kernels {reference}): window {want_window:?}, max |ours - \
                 transformers| = {diff:e} (max|y| = {scale:.2})"
            );
            assert!(diff <= 1e-4, "{name}: max |ours - transformers| = {diff:e}");
            // The window matters: the same weights without it give another output.
            if want_window.is_some_and(|w| w < dims[1]) {
                let mut hf = meta["hfConfig"].clone();
                hf["sliding_window"] = Value::Null;
                let full =
                    GqaAttention::from_hf_safetensors(&bytes, &hf.to_string(), 1, None, true)
                        .unwrap();
                assert_eq!(full.config().sliding_window, None);
                let (o2, _) = full.forward_f32(&x, &dims, None).unwrap();
                assert!(
                    common::max_abs_diff(&o2, &y) > 1e-2,
                    "{name}: window had no effect"
                );
            }
        }
    }
    set_reference_kernels(false);
}

#[test]
fn hf_config_window_follows_transformers_per_layer_rules() {
    let base = json!({"hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2});
    let with = |extra: Value| {
        let mut o = base.clone();
        o.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        o.to_string()
    };
    let window = |cfg: &str, layer: usize| {
        AttentionConfig::from_hf_config_layer(cfg, layer)
            .unwrap()
            .sliding_window
    };
    // Mistral: every layer; null or absent: none.
    assert_eq!(
        window(&with(json!({"sliding_window": 4096})), 0),
        Some(4096)
    );
    assert_eq!(window(&with(json!({"sliding_window": null})), 3), None);
    assert_eq!(window(&with(json!({})), 3), None);
    // Qwen2: use_sliding_window false -> none; true -> layers >= max_window_layers (default 28).
    let q = |u: bool, m: Option<u64>| {
        let mut e = json!({"sliding_window": 32, "use_sliding_window": u});
        if let Some(m) = m {
            e["max_window_layers"] = json!(m);
        }
        with(e)
    };
    assert_eq!(window(&q(false, Some(0)), 5), None);
    assert_eq!(window(&q(true, Some(2)), 1), None);
    assert_eq!(window(&q(true, Some(2)), 2), Some(32));
    assert_eq!(window(&q(true, None), 27), None);
    assert_eq!(window(&q(true, None), 28), Some(32));
    // use_sliding_window false wins over layer_types (Qwen2Config drops the window).
    let both = with(
        json!({"sliding_window": 8, "use_sliding_window": false, "layer_types": ["sliding_attention"]}),
    );
    assert_eq!(window(&both, 0), None);
    // layer_types decides when present.
    let lt =
        with(json!({"sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"]}));
    assert_eq!(window(&lt, 0), Some(8));
    assert_eq!(window(&lt, 1), None);
    // Errors name the field.
    let err = |cfg: String| {
        AttentionConfig::from_hf_config_layer(&cfg, 0)
            .unwrap_err()
            .to_string()
    };
    assert!(err(with(json!({"sliding_window": 0}))).contains("hfConfig.sliding_window"));
    assert!(err(with(json!({"sliding_window": 4, "layer_types": "x"})))
        .contains("hfConfig.layer_types"));
    assert!(err(with(json!({"sliding_window": -1}))).contains("hfConfig.sliding_window"));
}
