//! safetensors loading and saving (SPEC section 3) and every loading error path.

use std::collections::HashMap;

mod common;

use candle_core::Tensor;
use gqa_core::weights::axon_name;
use gqa_core::{read_tensors, Error, GqaConfig, GqaModel, LoadOptions, OutputMode};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

fn cfg() -> GqaConfig {
    let mut c = GqaConfig::new(5);
    c.hidden_size = 8;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.num_layers = 2;
    c.rope = true;
    c.output_mode = OutputMode::All;
    c.seed = 11;
    c
}

/// (name, dtype, shape, bytes) entries.
type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn entries(model: &GqaModel) -> Vec<Entry> {
    model
        .params()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                Dtype::F32,
                v.dims().to_vec(),
                f32_bytes(&v.flatten_all().unwrap().to_vec1::<f32>().unwrap()),
            )
        })
        .collect()
}

fn write(entries: &[Entry], meta: Option<HashMap<String, String>>) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = entries
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, meta).unwrap()
}

fn with_config(entries: &[Entry], c: &GqaConfig) -> Vec<u8> {
    write(
        entries,
        Some(HashMap::from([("gqa_config".to_string(), c.to_json())])),
    )
}

fn opts_with(c: &GqaConfig) -> LoadOptions {
    LoadOptions {
        config: Some(c.clone()),
        ..Default::default()
    }
}

fn values(m: &GqaModel) -> Vec<(String, Vec<u32>)> {
    m.params()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                v.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|f| f.to_bits())
                    .collect(),
            )
        })
        .collect()
}

/// A `[2, 3, 5]` input from the tests' shared generator, in [-1.6, 1.6).
fn input() -> Vec<f32> {
    common::pseudo_amp(2 * 3 * 5, 21, 1.6)
}

#[test]
fn save_then_load_round_trips_bitwise() {
    let a = GqaModel::new(cfg()).unwrap();
    let bytes = a.to_safetensors().unwrap();
    let b = GqaModel::from_safetensors(&bytes, &LoadOptions::default()).unwrap();
    assert_eq!(b.config(), a.config());
    assert_eq!(values(&a), values(&b));
    assert_eq!(a.weights_digest().unwrap(), b.weights_digest().unwrap());
    let ya = a.forward_f32(&input(), &[2, 3, 5], None).unwrap();
    let yb = b.forward_f32(&input(), &[2, 3, 5], None).unwrap();
    assert_eq!(ya, yb);
    // The file holds canonical names, F32, and the config metadata.
    let (tensors, meta) = read_tensors(&bytes).unwrap();
    assert_eq!(GqaConfig::from_json(&meta["gqa_config"]).unwrap(), cfg());
    let mut names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let mut want = a.params().names();
    names.sort_unstable();
    want.sort_unstable();
    assert_eq!(names, want);
}

#[test]
fn save_with_extra_tensors_and_metadata() {
    let a = GqaModel::new(cfg()).unwrap();
    let head = Tensor::from_vec(vec![1f32, 2.0, 3.0], (3,), &candle_core::Device::Cpu).unwrap();
    let bytes = a
        .to_safetensors_with(
            &[("head.bias".into(), head)],
            &[("gqa_head".into(), "{\"type\":\"x\"}".into())],
        )
        .unwrap();
    let (tensors, meta) = read_tensors(&bytes).unwrap();
    assert_eq!(meta["gqa_head"], "{\"type\":\"x\"}");
    let hb = tensors
        .iter()
        .find(|(n, _)| n == "head.bias")
        .unwrap()
        .1
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(hb, vec![1.0, 2.0, 3.0]);
    // Non-strict load ignores head.*; strict load rejects it by name.
    assert!(GqaModel::from_safetensors(&bytes, &LoadOptions::default()).is_ok());
    match GqaModel::from_safetensors(
        &bytes,
        &LoadOptions {
            strict: true,
            ..Default::default()
        },
    ) {
        Err(Error::UnexpectedParameter { name }) => assert_eq!(name, "head.bias"),
        other => panic!("{other:?}"),
    }
    // Duplicate names are refused.
    let dup = Tensor::zeros(8, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    assert_eq!(
        a.to_safetensors_with(&[("final_norm.bias".into(), dup)], &[])
            .unwrap_err()
            .code(),
        "INVALID_INPUT"
    );
}

#[test]
fn truncated_and_garbage_files_are_malformed() {
    let bytes = GqaModel::new(cfg()).unwrap().to_safetensors().unwrap();
    for cut in [0, 4, 8, 20, bytes.len() - 1] {
        let r = GqaModel::from_safetensors(&bytes[..cut], &LoadOptions::default());
        assert!(
            matches!(r, Err(Error::MalformedFile { .. })),
            "cut {cut}: {r:?}"
        );
    }
    // Header length claims more than the file has; header that is not JSON.
    let mut bad = 1_000_000u64.to_le_bytes().to_vec();
    bad.extend_from_slice(b"{}");
    assert!(matches!(
        GqaModel::from_safetensors(&bad, &LoadOptions::default()),
        Err(Error::MalformedFile { .. })
    ));
    let mut bad = 8u64.to_le_bytes().to_vec();
    bad.extend_from_slice(b"not json");
    assert!(matches!(
        GqaModel::from_safetensors(&bad, &LoadOptions::default()),
        Err(Error::MalformedFile { .. })
    ));
    let mut m = GqaModel::new(cfg()).unwrap();
    assert!(matches!(
        m.load_weights(b"garbage", &LoadOptions::default()),
        Err(Error::MalformedFile { .. })
    ));
}

#[test]
fn wrong_shape_names_the_tensor_and_changes_nothing() {
    let src = GqaModel::new(cfg()).unwrap();
    let mut e = entries(&src);
    let i = e
        .iter()
        .position(|x| x.0 == "blocks.1.attn.k_proj.weight")
        .unwrap();
    e[i].2 = vec![8, 4];
    let bytes = with_config(&e, &cfg());
    match GqaModel::from_safetensors(&bytes, &LoadOptions::default()) {
        Err(Error::TensorMismatch {
            name,
            field,
            expected,
            found,
        }) => {
            assert_eq!(
                (
                    name.as_str(),
                    field.as_str(),
                    expected.as_str(),
                    found.as_str()
                ),
                ("blocks.1.attn.k_proj.weight", "shape", "[4, 8]", "[8, 4]")
            );
        }
        other => panic!("{other:?}"),
    }
    // A failed load_weights leaves the model as it was.
    let mut other = cfg();
    other.seed = 99;
    let mut m = GqaModel::new(other).unwrap();
    let before = values(&m);
    assert!(m.load_weights(&bytes, &LoadOptions::default()).is_err());
    assert_eq!(values(&m), before);
}

#[test]
fn non_finite_weight_is_rejected_by_name() {
    let mut e = entries(&GqaModel::new(cfg()).unwrap());
    let i = e
        .iter()
        .position(|x| x.0 == "blocks.0.ffn_up.bias")
        .unwrap();
    let mut v = vec![0f32; 32];
    v[3] = f32::NAN;
    e[i].3 = f32_bytes(&v);
    match GqaModel::from_safetensors(&with_config(&e, &cfg()), &LoadOptions::default()) {
        Err(Error::NonFiniteWeight { name, index, value }) => {
            assert_eq!(
                (name.as_str(), index, value.as_str()),
                ("blocks.0.ffn_up.bias", 3, "NaN")
            );
        }
        other => panic!("{other:?}"),
    }
    v[3] = f32::INFINITY;
    e[i].3 = f32_bytes(&v);
    assert!(matches!(
        GqaModel::from_safetensors(&with_config(&e, &cfg()), &LoadOptions::default()),
        Err(Error::NonFiniteWeight { .. })
    ));
}

#[test]
fn missing_parameter_is_named() {
    let mut e = entries(&GqaModel::new(cfg()).unwrap());
    e.retain(|x| x.0 != "blocks.1.ffn_norm.bias");
    match GqaModel::from_safetensors(&with_config(&e, &cfg()), &LoadOptions::default()) {
        Err(Error::MissingParameter { name, looked_for }) => {
            assert_eq!(name, "blocks.1.ffn_norm.bias");
            assert!(
                looked_for.contains("blocks.1.ffn_norm.bias"),
                "{looked_for}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A file with no model tensor at all.
    let only = vec![(
        "input.x".to_string(),
        Dtype::F32,
        vec![1],
        f32_bytes(&[1.0]),
    )];
    assert_eq!(
        GqaModel::from_safetensors(&with_config(&only, &cfg()), &LoadOptions::default())
            .unwrap_err()
            .code(),
        "MISSING_PARAMETER"
    );
}

#[test]
fn strict_loading_rejects_extra_tensors() {
    let mut e = entries(&GqaModel::new(cfg()).unwrap());
    e.push((
        "optimizer.step".into(),
        Dtype::I64,
        vec![1],
        5i64.to_le_bytes().to_vec(),
    ));
    let bytes = with_config(&e, &cfg());
    let m = GqaModel::from_safetensors(&bytes, &LoadOptions::default()).unwrap();
    assert_eq!(m.params().len(), 2 + 16 * 2 + 2);
    match GqaModel::from_safetensors(
        &bytes,
        &LoadOptions {
            strict: true,
            ..Default::default()
        },
    ) {
        Err(Error::UnexpectedParameter { name }) => assert_eq!(name, "optimizer.step"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_config_says_how_to_pass_it() {
    let src = GqaModel::new(cfg()).unwrap();
    let bytes = write(&entries(&src), None);
    match GqaModel::from_safetensors(&bytes, &LoadOptions::default()) {
        Err(Error::MissingConfig { reason }) => assert!(
            reason.contains("gqa_config") && reason.contains("config"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let m = GqaModel::from_safetensors(&bytes, &opts_with(&cfg())).unwrap();
    assert_eq!(values(&m), values(&src));
}

#[test]
fn f16_and_bf16_weights_are_converted() {
    let src = GqaModel::new(cfg()).unwrap();
    for dtype in [Dtype::F16, Dtype::BF16] {
        let e: Vec<Entry> = entries(&src)
            .into_iter()
            .map(|(n, _, s, b)| {
                let v: Vec<f32> = b
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                let bytes: Vec<u8> = match dtype {
                    Dtype::F16 => v
                        .iter()
                        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                        .collect(),
                    _ => v
                        .iter()
                        .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                        .collect(),
                };
                (n, dtype, s, bytes)
            })
            .collect();
        let m =
            GqaModel::from_safetensors(&with_config(&e, &cfg()), &LoadOptions::default()).unwrap();
        for ((n, a), (_, b)) in src.params().iter().zip(m.params().iter()) {
            let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (x, y) in a.iter().zip(&b) {
                let want = match dtype {
                    Dtype::F16 => half::f16::from_f32(*x).to_f32(),
                    _ => half::bf16::from_f32(*x).to_f32(),
                };
                assert_eq!(*y, want, "{dtype:?} {n}");
            }
        }
    }
    // Other dtypes are a dtype mismatch naming the tensor.
    let mut e = entries(&src);
    let i = e.iter().position(|x| x.0 == "final_norm.weight").unwrap();
    e[i].1 = Dtype::I32;
    match GqaModel::from_safetensors(&with_config(&e, &cfg()), &LoadOptions::default()) {
        Err(Error::TensorMismatch { name, field, .. }) => assert_eq!(
            (name.as_str(), field.as_str()),
            ("final_norm.weight", "dtype")
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn axon_names_with_transposed_kernels_load() {
    assert_eq!(
        axon_name("blocks.0.attn.q_proj.weight").unwrap(),
        "gqa_block_1_attn_q_proj.kernel"
    );
    assert_eq!(
        axon_name("blocks.3.attn_norm.bias").unwrap(),
        "gqa_block_4_attn_norm.beta"
    );
    assert_eq!(
        axon_name("blocks.1.ffn_down.weight").unwrap(),
        "gqa_block_2_ffn_down.kernel"
    );
    assert_eq!(axon_name("final_norm.weight").unwrap(), "final_norm.gamma");
    assert_eq!(
        axon_name("input_projection.weight").unwrap(),
        "input_projection.kernel"
    );
    let src = GqaModel::new(cfg()).unwrap();
    let e: Vec<Entry> = src
        .params()
        .iter()
        .map(|(n, v)| {
            let t = if v.rank() == 2 {
                v.t().unwrap().contiguous().unwrap()
            } else {
                v.as_tensor().clone()
            };
            (
                format!("model.{}", axon_name(n).unwrap()),
                Dtype::F32,
                t.dims().to_vec(),
                f32_bytes(&t.flatten_all().unwrap().to_vec1::<f32>().unwrap()),
            )
        })
        .collect();
    let bytes = write(&e, None);
    let m = GqaModel::from_safetensors(&bytes, &opts_with(&cfg())).unwrap();
    assert_eq!(values(&m), values(&src));
    assert_eq!(
        m.forward_f32(&input(), &[2, 3, 5], None).unwrap(),
        src.forward_f32(&input(), &[2, 3, 5], None).unwrap()
    );
    // Untransposed Axon kernels are a shape error naming the Axon key.
    let e2: Vec<Entry> = src
        .params()
        .iter()
        .map(|(n, v)| {
            (
                axon_name(n).unwrap(),
                Dtype::F32,
                v.dims().to_vec(),
                f32_bytes(&v.flatten_all().unwrap().to_vec1::<f32>().unwrap()),
            )
        })
        .collect();
    match GqaModel::from_safetensors(&write(&e2, None), &opts_with(&cfg())) {
        Err(Error::TensorMismatch {
            name,
            expected,
            found,
            ..
        }) => {
            assert_eq!(
                (name.as_str(), expected.as_str(), found.as_str()),
                ("input_projection.kernel", "[5, 8]", "[8, 5]")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn common_prefix_is_detected_or_given() {
    let src = GqaModel::new(cfg()).unwrap();
    let mut e = entries(&src);
    for x in &mut e {
        x.0 = format!("model.{}", x.0);
    }
    e.push((
        "input.x".into(),
        Dtype::F32,
        vec![2],
        f32_bytes(&[f32::NAN, 1.0]),
    ));
    let bytes = with_config(&e, &cfg());
    let m = GqaModel::from_safetensors(&bytes, &LoadOptions::default()).unwrap();
    assert_eq!(values(&m), values(&src));
    let m = GqaModel::from_safetensors(
        &bytes,
        &LoadOptions {
            prefix: Some("model.".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(values(&m), values(&src));
    // A wrong explicit prefix finds nothing.
    let r = GqaModel::from_safetensors(
        &bytes,
        &LoadOptions {
            prefix: Some("weight.".into()),
            ..Default::default()
        },
    );
    assert_eq!(r.unwrap_err().code(), "MISSING_PARAMETER");
    // Strict: the prefixed model tensors are fine, input.x is not.
    match GqaModel::from_safetensors(
        &bytes,
        &LoadOptions {
            strict: true,
            ..Default::default()
        },
    ) {
        Err(Error::UnexpectedParameter { name }) => assert_eq!(name, "input.x"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn load_options_json_is_camel_case() {
    let o: LoadOptions =
        serde_json::from_str(r#"{"strict":true,"prefix":"model.","config":{"embedDim":3}}"#)
            .unwrap();
    assert!(o.strict);
    assert_eq!(o.prefix.as_deref(), Some("model."));
    assert_eq!(o.config.unwrap().embed_dim, 3);
    assert_eq!(
        serde_json::from_str::<LoadOptions>("{}").unwrap(),
        LoadOptions::default()
    );
}

#[test]
fn files_saved_with_the_former_name_window_size_still_load() {
    let a = GqaModel::new(cfg()).unwrap();
    // A `gqa_config` as files written before the rename carry it: `windowSize`, not `seqLenHint`.
    let mut meta: serde_json::Value = serde_json::from_str(&a.config().to_json()).unwrap();
    let obj = meta.as_object_mut().unwrap();
    obj.remove("seqLenHint").unwrap();
    obj.insert("windowSize".into(), 33.into());
    let old = write(
        &entries(&a),
        Some(HashMap::from([(
            "gqa_config".to_string(),
            meta.to_string(),
        )])),
    );
    let b = GqaModel::from_safetensors(&old, &LoadOptions::default()).unwrap();
    assert_eq!(b.config().seq_len_hint, 33);
    assert_eq!(values(&a), values(&b));
    // Saved again under the current name.
    let again = gqa_core::read_metadata(&b.to_safetensors().unwrap()).unwrap();
    assert!(again["gqa_config"].contains(r#""seqLenHint":33"#));
    assert!(!again["gqa_config"].contains("windowSize"));
    // The committed fixtures are such files (they are not regenerated on purpose).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let bytes = std::fs::read(root.join("gqa_4_2.safetensors")).unwrap();
    assert!(gqa_core::read_metadata(&bytes).unwrap()["gqa_config"].contains(r#""windowSize""#));
    let f = GqaModel::from_safetensors(&bytes, &LoadOptions::default()).unwrap();
    assert_eq!(f.config().seq_len_hint, 60);
}
