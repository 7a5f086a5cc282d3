//! Hugging Face rotary scaling, explicit headDim and attention layers loaded from Hugging Face
//! checkpoints, against fixtures written by `scripts/gen_rope_fixtures.py` with
//! transformers and torch: inverse frequencies and attention factors from transformers' rope
//! init functions (1e-6 relative), and the outputs of transformers' LlamaAttention /
//! Qwen2Attention modules (1e-5 relative to the largest output, about 1e-4 absolute at O(10)).

mod common;

use std::path::PathBuf;

use gqa_core::rope::{hf_inv_freq, RopeScaling};
use gqa_core::{AttentionConfig, GqaAttention, GqaConfig, GqaModel};
use serde_json::{json, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf_rope")
}

fn read_json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir().join(name)).unwrap()).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| ((*x as f64 - *y as f64) / (*y as f64).abs().max(1e-30)).abs())
        .fold(0.0, f64::max)
}

use common::st_f32 as tensor;

#[test]
fn inv_freq_and_attention_factor_match_transformers() {
    let meta = read_json("inv_freq.json");
    let cases = meta["cases"].as_array().unwrap();
    assert!(cases.len() >= 16);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let d = c["headDim"].as_u64().unwrap() as usize;
        let theta = c["ropeTheta"].as_f64().unwrap();
        let seq = c["seqLen"].as_u64().unwrap() as usize;
        let want = f32s(&c["invFreq"]);
        let want_af = c["attentionFactor"].as_f64().unwrap();
        let scaling: Option<RopeScaling> =
            serde_json::from_value(c["ropeScaling"].clone()).unwrap();
        // The formula itself.
        let (inv, af) = hf_inv_freq(d, theta, scaling.as_ref(), seq);
        let e = max_rel(&inv, &want);
        assert!(
            e <= 1e-6,
            "{name}: inv_freq rel err {e:e}\n ours {inv:?}\n want {want:?}"
        );
        assert!(
            ((af - want_af) / want_af).abs() <= 1e-6,
            "{name}: attention factor {af} vs {want_af}"
        );
        // Through the options of the attention layer (what the model and the bindings use).
        let mut o = json!({"hiddenSize": 2 * d, "numHeads": 2, "numKvHeads": 1, "headDim": d, "rope": true, "ropeTheta": theta});
        if !c["ropeScaling"].is_null() {
            o["ropeScaling"] = c["ropeScaling"].clone();
        }
        let cfg = AttentionConfig::from_json(&o.to_string()).unwrap();
        let (inv2, af2) = cfg.rope_plan().unwrap().inv_freq(seq);
        let e2 = max_rel(&inv2, &want);
        assert!(
            e2 <= 1e-6,
            "{name}: inv_freq through the options, rel err {e2:e}"
        );
        assert!(
            ((af2 as f64 - want_af) / want_af).abs() <= 1e-6,
            "{name}: attention factor through the options {af2} vs {want_af}"
        );
    }
}

/// The module fixtures, by name: the list `scripts/gen_rope_fixtures.py` writes beside the
/// frequency cases (the TypeScript suite reads the same list).
fn modules() -> Vec<String> {
    let names: Vec<String> = read_json("inv_freq.json")["modules"]
        .as_array()
        .expect("inv_freq.json lists its modules")
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert!(
        names.len() >= 8,
        "inv_freq.json lists {} modules",
        names.len()
    );
    names
}

#[test]
fn hf_attention_layers_match_transformers_modules() {
    for name in modules() {
        let meta = read_json(&format!("{name}.json"));
        let bytes = std::fs::read(dir().join(format!("{name}.safetensors"))).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (x, dims) = tensor(&st, "test.input");
        let (y, _) = tensor(&st, "test.output");
        let (hf_inv, _) = tensor(&st, "test.inv_freq");
        let (hf_af, _) = tensor(&st, "test.attention_scaling");
        let opts = json!({"hfConfig": meta["hfConfig"], "layer": meta["layer"]});
        let layer =
            GqaAttention::load_value(&bytes, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cfg = layer.config();
        let hf = &meta["hfConfig"];
        assert_eq!(
            cfg.head_dim(),
            hf["head_dim"].as_u64().map_or(32 / 4, |d| d as usize),
            "{name}"
        );
        // The rotary module's frequencies at this length (dynamic: recomputed for T).
        let t = dims[1];
        let (inv, af) = cfg.rope_plan().unwrap().inv_freq(t);
        assert!(
            max_rel(&inv, &hf_inv) <= 1e-6,
            "{name}: inv_freq {inv:?} vs {hf_inv:?}"
        );
        assert!(
            ((af - hf_af[0]) / hf_af[0]).abs() <= 1e-6,
            "{name}: attention factor {af} vs {}",
            hf_af[0]
        );
        let (out, odims) = layer.forward_f32(&x, &dims, None).unwrap();
        assert_eq!(odims, dims);
        // 1e-5 relative to the output's scale (these outputs reach O(10), where one f32 ulp is
        // ~1e-6 and the float32 transformers reference itself rounds): measured <= 7.2e-6 absolute.
        let diff = common::max_abs_diff(&out, &y);
        let scale = y.iter().fold(1f32, |m, v| m.max(v.abs()));
        eprintln!("{name}: max |ours - transformers| = {diff:e} (max(1, max|y|) = {scale:.3})");
        assert!(
            diff <= 1e-5 * scale,
            "{name}: max |ours - transformers| = {diff:e} > 1e-5 * {scale}"
        );
        // The same layer loaded through the explicit Rust API.
        let l2 = GqaAttention::from_hf_safetensors(&bytes, &hf.to_string(), 1, None, true).unwrap();
        assert_eq!(
            l2.weights_digest().unwrap(),
            layer.weights_digest().unwrap()
        );
        // Layer 0 holds a decoy q_proj only: loading it fails, naming the layer-0 key it missed.
        let e =
            GqaAttention::from_hf_safetensors(&bytes, &hf.to_string(), 0, None, false).unwrap_err();
        assert_eq!(e.code(), "MISSING_PARAMETER", "{name}: {e}");
        assert!(e.to_string().contains("`model.layers.0.self_attn."), "{e}");
    }
}

#[test]
fn without_rotary_scaling_the_output_differs() {
    // The fixtures can tell: the yarn module's output with plain rope (same weights) is off.
    let meta = read_json("llama_yarn_v5.json");
    let bytes = std::fs::read(dir().join("llama_yarn_v5.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (x, dims) = tensor(&st, "test.input");
    let (y, _) = tensor(&st, "test.output");
    let mut hf = meta["hfConfig"].clone();
    hf["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 10000.0});
    let layer = GqaAttention::from_hf_safetensors(&bytes, &hf.to_string(), 1, None, false).unwrap();
    let (out, _) = layer.forward_f32(&x, &dims, None).unwrap();
    let diff = out
        .iter()
        .zip(&y)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff > 1e-2, "{diff}");
}

#[test]
fn from_hf_config_reads_both_forms_and_old_type_key() {
    let v4 = json!({"hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 2, "max_position_embeddings": 4096,
        "rope_theta": 500000.0, "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024, "beta_fast": 16}});
    let v5 = json!({"hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 2, "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "yarn", "rope_theta": 500000.0, "factor": 4.0, "original_max_position_embeddings": 1024, "beta_fast": 16}});
    let a = AttentionConfig::from_hf_config(&v4.to_string()).unwrap();
    let b = AttentionConfig::from_hf_config(&v5.to_string()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.rope_theta, 500000.0);
    assert_eq!(a.head_dim(), 8);
    assert!(
        matches!(a.rope_scaling, Some(RopeScaling::Yarn { factor, original_max_position_embeddings: 1024, beta_fast: Some(bf), .. }) if factor == 4.0 && bf == 16.0)
    );
    // yarn without factor: max_position_embeddings / original (transformers' DeepSeek rule).
    let nf = json!({"hidden_size": 64, "num_attention_heads": 8, "max_position_embeddings": 4096,
        "rope_scaling": {"rope_type": "yarn", "original_max_position_embeddings": 1024}});
    let c = AttentionConfig::from_hf_config(&nf.to_string()).unwrap();
    assert!(matches!(c.rope_scaling, Some(RopeScaling::Yarn { factor, .. }) if factor == 4.0));
    assert_eq!(c.num_kv_heads, 8);
    // dynamic's threshold is max_position_embeddings.
    let dy = json!({"hidden_size": 64, "num_attention_heads": 8, "max_position_embeddings": 2048, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}});
    let d = AttentionConfig::from_hf_config(&dy.to_string()).unwrap();
    assert_eq!(
        d.rope_scaling,
        Some(RopeScaling::Dynamic {
            factor: 2.0,
            original_max_position_embeddings: 2048
        })
    );
    // Unsupported forms name the key.
    for (cfg, key) in [
        (
            json!({"hidden_size": 64, "num_attention_heads": 8, "rope_scaling": {"rope_type": "longrope", "factor": 2.0}}),
            "hfConfig.rope_scaling.rope_type",
        ),
        (
            json!({"hidden_size": 64, "num_attention_heads": 8, "partial_rotary_factor": 0.5}),
            "hfConfig.partial_rotary_factor",
        ),
        (
            json!({"hidden_size": 64, "num_attention_heads": 8, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}),
            "hfConfig.max_position_embeddings",
        ),
        (json!({"num_attention_heads": 8}), "hfConfig.hidden_size"),
        (
            json!({"hidden_size": 64, "num_attention_heads": 8, "rope_parameters": {"rope_type": "linear"}}),
            "hfConfig.rope_parameters.factor",
        ),
    ] {
        let e = AttentionConfig::from_hf_config(&cfg.to_string()).unwrap_err();
        assert_eq!(e.code(), "INVALID_OPTION");
        assert!(e.to_string().contains(&format!("`{key}`")), "{key}: {e}");
    }
}

fn option_error(json: Value) -> String {
    let e = GqaConfig::from_json(&json.to_string()).unwrap_err();
    assert_eq!(e.code(), "INVALID_OPTION", "{e}");
    let a = AttentionConfig::from_json(
        &{
            let mut j = json.clone();
            j.as_object_mut().unwrap().remove("embedDim");
            j
        }
        .to_string(),
    )
    .unwrap_err();
    assert_eq!(a.code(), "INVALID_OPTION", "{a}");
    let (m, n) = (e.to_string(), a.to_string());
    let field = |s: &str| s.split('`').nth(1).unwrap_or("").to_string();
    assert_eq!(
        field(&m),
        field(&n),
        "model and attention name the same field: {m} / {n}"
    );
    m
}

#[test]
fn invalid_rope_settings_name_the_field() {
    let base = json!({"embedDim": 4, "hiddenSize": 32, "numHeads": 4, "numKvHeads": 2});
    let with = |k: &str, v: Value| {
        let mut j = base.clone();
        j[k] = v;
        j
    };
    let cases = [
        (
            with("ropeScaling", json!({"type": "ntk", "factor": 2.0})),
            "ropeScaling.type",
        ),
        (
            with("ropeScaling", json!({"type": "linear", "factor": 0.0})),
            "ropeScaling.factor",
        ),
        (
            with("ropeScaling", json!({"type": "linear", "factor": -1.5})),
            "ropeScaling.factor",
        ),
        (
            with("ropeScaling", json!({"type": "yarn", "factor": 4.0})),
            "ropeScaling.originalMaxPositionEmbeddings",
        ),
        (
            with("ropeScaling", json!({"type": "dynamic", "factor": 4.0})),
            "ropeScaling.originalMaxPositionEmbeddings",
        ),
        (
            with(
                "ropeScaling",
                json!({"type": "llama3", "factor": 8.0, "lowFreqFactor": 1.0, "highFreqFactor": 4.0}),
            ),
            "ropeScaling.originalMaxPositionEmbeddings",
        ),
        (
            with(
                "ropeScaling",
                json!({"type": "llama3", "factor": 8.0, "lowFreqFactor": 4.0, "highFreqFactor": 4.0, "originalMaxPositionEmbeddings": 64}),
            ),
            "ropeScaling.highFreqFactor",
        ),
        (
            with(
                "ropeScaling",
                json!({"type": "yarn", "factor": 4.0, "originalMaxPositionEmbeddings": 64, "attentionFactor": 0.0}),
            ),
            "ropeScaling.attentionFactor",
        ),
        (
            with(
                "ropeScaling",
                json!({"type": "linear", "factor": 2.0, "beta": 1}),
            ),
            "ropeScaling.beta",
        ),
        (
            with("ropeScaling", json!({"factor": 2.0})),
            "ropeScaling.type",
        ),
        (with("ropeTheta", json!(0.0)), "ropeTheta"),
        (with("headDim", json!(0)), "headDim"),
        (
            {
                let mut j = with("headDim", json!(7));
                j["rope"] = json!(true);
                j
            },
            "headDim",
        ),
        (
            {
                let mut j = with("headDim", json!(7));
                j["ropeScaling"] = json!({"type": "linear", "factor": 2.0});
                j
            },
            "headDim",
        ),
        (
            {
                let mut j = with("yarn", json!(true));
                j["ropeScaling"] = json!({"type": "linear", "factor": 2.0});
                j
            },
            "ropeScaling",
        ),
    ];
    for (j, field) in cases {
        let m = option_error(j.clone());
        assert!(
            m.starts_with(&format!("invalid option `{field}`")),
            "{j}: {m}"
        );
    }
    // An odd headDim without rotary is fine; hiddenSize need not divide by numHeads with headDim.
    GqaConfig::from_json(&with("headDim", json!(7)).to_string()).unwrap();
    let mut j = with("headDim", json!(12));
    j["hiddenSize"] = json!(30);
    GqaConfig::from_json(&j.to_string()).unwrap();
}

#[test]
fn head_dim_sizes_projections_counts_and_cache() {
    // hiddenSize 32, 4 heads of 12, 2 KV heads: qDim 48, kvDim 24.
    let j = json!({"embedDim": 32, "hiddenSize": 32, "numHeads": 4, "numKvHeads": 2, "headDim": 12, "numLayers": 2, "rope": true, "dropout": 0.0});
    let cfg = GqaConfig::from_json(&j.to_string()).unwrap();
    assert_eq!((cfg.head_dim(), cfg.q_dim(), cfg.kv_dim()), (12, 48, 24));
    let (h, q, kv, l) = (32u64, 48u64, 24u64, 2u64);
    assert_eq!(cfg.param_count(), l * (2 * h * q + 2 * h * kv + 8 * h * h));
    let per_layer = 2 * h
        + (h * q + q)
        + 2 * (h * kv + kv)
        + (q * h + h)
        + 2 * h
        + (h * 4 * h + 4 * h)
        + (4 * h * h + h);
    assert_eq!(cfg.param_count_exact(), l * per_layer + 2 * h);
    assert_eq!(cfg.kv_cache_bytes_per_token(), 2 * 2 * 2 * 12 * 4);
    let model = GqaModel::new(cfg.clone()).unwrap();
    assert_eq!(
        model.params().total_elements() as u64,
        cfg.param_count_exact()
    );
    let shape = |n: &str| {
        model
            .params()
            .iter()
            .find(|(k, _)| *k == n)
            .unwrap()
            .1
            .dims()
            .to_vec()
    };
    assert_eq!(shape("blocks.0.attn.q_proj.weight"), vec![48, 32]);
    assert_eq!(shape("blocks.0.attn.k_proj.weight"), vec![24, 32]);
    assert_eq!(shape("blocks.1.attn.out_proj.weight"), vec![32, 48]);
    // The model runs (fused engine and session) and round-trips its options through a file.
    let x = common::pseudo(2 * 5 * 32, 3);
    let (y, dims) = model.forward_f32(&x, &[2, 5, 32], None).unwrap();
    assert_eq!(dims, vec![2, 32]);
    assert!(y.iter().all(|v| v.is_finite()));
    let bytes = model.to_safetensors().unwrap();
    let back = GqaModel::from_safetensors(&bytes, &Default::default()).unwrap();
    assert_eq!(back.config(), model.config());
}

#[test]
fn dynamic_ntk_in_a_session_follows_the_sequence_length() {
    // threshold 8: below it the session equals the full forward over the prefix; one push of
    // T > 8 positions equals the full forward at T (both recompute for length T); a decode step
    // past the threshold rotates the new position with the frequencies of the new length.
    let j = json!({"embedDim": 6, "hiddenSize": 16, "numHeads": 4, "numKvHeads": 2, "numLayers": 2, "dropout": 0.0,
        "outputMode": "all", "ropeScaling": {"type": "dynamic", "factor": 3.0, "originalMaxPositionEmbeddings": 8}});
    let model = GqaModel::new(GqaConfig::from_json(&j.to_string()).unwrap()).unwrap();
    let t = 14;
    let x = common::pseudo(t * 6, 9);
    // Full forwards at 6 and at 14.
    let (full6, _) = model.forward_f32(&x[..6 * 6], &[1, 6, 6], None).unwrap();
    let (full14, _) = model.forward_f32(&x, &[1, t, 6], None).unwrap();
    let mut s = model.session(1, 32).unwrap();
    let (a, _) = s
        .push(&model, &x[..4 * 6], &[1, 4, 6], None, false)
        .unwrap();
    let (b, _) = s
        .push(&model, &x[4 * 6..6 * 6], &[1, 2, 6], None, false)
        .unwrap();
    let got: Vec<f32> = a.into_iter().chain(b).collect();
    assert!(
        common::rel_err(&got, &full6) < 1e-5,
        "{}",
        common::rel_err(&got, &full6)
    );
    let mut s2 = model.session(1, 32).unwrap();
    let (c, _) = s2.push(&model, &x, &[1, t, 6], None, false).unwrap();
    assert!(
        common::rel_err(&c, &full14) < 1e-5,
        "{}",
        common::rel_err(&c, &full14)
    );
    // The first 6 positions of the 14-long forward differ from the 6-long forward: length 14
    // rescaled every position's frequencies (causality alone would keep them equal).
    assert!(common::rel_err(&full14[..6 * 16], &full6) > 1e-4);
    // Decode step at length 15 > 8 runs and differs from the same weights with plain rotary.
    let x15 = common::pseudo(6, 10);
    let (d, _) = s2.push(&model, &x15, &[1, 1, 6], None, false).unwrap();
    assert!(d.iter().all(|v| v.is_finite()));
    let mut j0 = j.clone();
    j0["ropeScaling"] = Value::Null;
    j0["rope"] = json!(true);
    let j0s = j0.to_string().replace(",\"ropeScaling\":null", "");
    let m0 = GqaModel::new(GqaConfig::from_json(&j0s).unwrap()).unwrap();
    let mut s0 = m0.session(1, 32).unwrap();
    s0.push(&m0, &x, &[1, t, 6], None, false).unwrap();
    let (d0, _) = s0.push(&m0, &x15, &[1, 1, 6], None, false).unwrap();
    assert!(common::rel_err(&d, &d0) > 1e-4);
}
