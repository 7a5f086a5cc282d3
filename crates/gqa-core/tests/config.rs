//! Option validation (SPEC section 1) and parameter counts (SPEC section 3).

use gqa_core::{Error, GqaConfig, GqaModel};

fn option_err(json: &str) -> (String, String) {
    match GqaConfig::from_json(json) {
        Err(e @ Error::InvalidOption { .. }) => {
            let Error::InvalidOption { ref option, .. } = e else {
                unreachable!()
            };
            (option.clone(), e.to_string())
        }
        other => panic!("{json}: expected InvalidOption, got {other:?}"),
    }
}

#[test]
fn heads_not_divisible_by_kv_heads_names_both() {
    let (opt, msg) = option_err(r#"{"embedDim":4,"hiddenSize":28,"numHeads":7,"numKvHeads":2}"#);
    assert_eq!(opt, "numKvHeads");
    assert!(
        msg.contains("numHeads=7") && msg.contains("found 2"),
        "{msg}"
    );
}

#[test]
fn hidden_not_divisible_by_heads() {
    let (opt, msg) = option_err(r#"{"embedDim":4,"hiddenSize":30,"numHeads":4,"numKvHeads":2}"#);
    assert_eq!(opt, "hiddenSize");
    assert!(
        msg.contains("numHeads=4") && msg.contains("found 30"),
        "{msg}"
    );
}

#[test]
fn each_rule_names_its_option() {
    let cases = [
        (r#"{"hiddenSize":16}"#, "embedDim"),
        (r#"{"embedDim":0}"#, "embedDim"),
        (r#"{"embedDim":4,"numHeads":0}"#, "numHeads"),
        (r#"{"embedDim":4,"numKvHeads":0}"#, "numKvHeads"),
        (r#"{"embedDim":4,"numLayers":0}"#, "numLayers"),
        (r#"{"embedDim":4,"dropout":1.0}"#, "dropout"),
        (r#"{"embedDim":4,"dropout":-0.1}"#, "dropout"),
        (r#"{"embedDim":4,"yarnScale":0}"#, "yarnScale"),
        (
            r#"{"embedDim":4,"yarnOriginalMaxPosition":0}"#,
            "yarnOriginalMaxPosition",
        ),
        (r#"{"embedDim":4,"seqLenHint":0}"#, "seqLenHint"),
        // The deprecated name reads as seqLenHint, and its rule names the current one.
        (r#"{"embedDim":4,"windowSize":0}"#, "seqLenHint"),
        (
            r#"{"embedDim":4,"hiddenSize":12,"numHeads":4,"numKvHeads":2,"rope":true}"#,
            "hiddenSize",
        ),
        (
            r#"{"embedDim":4,"hiddenSize":12,"numHeads":4,"numKvHeads":2,"yarn":true}"#,
            "hiddenSize",
        ),
        (r#"{"embedDim":4,"numHedas":8}"#, "numHedas"),
        (r#"{"embedDim":"four"}"#, "embedDim"),
    ];
    for (json, want) in cases {
        let (opt, _) = option_err(json);
        assert_eq!(opt, want, "{json}");
    }
    // Odd headDim is fine without rotary.
    assert!(
        GqaConfig::from_json(r#"{"embedDim":4,"hiddenSize":12,"numHeads":4,"numKvHeads":2}"#)
            .is_ok()
    );
}

#[test]
fn model_new_validates() {
    let mut cfg = GqaConfig::new(8);
    cfg.num_heads = 7;
    let err = GqaModel::new(cfg).unwrap_err();
    assert_eq!(err.code(), "INVALID_OPTION");
}

#[test]
fn approximate_param_count_is_edifice_formula() {
    // Defaults with embedDim 287: H=256, qDim=256, kvDim=64, 4 layers.
    let cfg = GqaConfig::new(287);
    let per_layer = 2 * 256 * 256 + 2 * 256 * 64 + 8 * 256 * 256; // 688128
    assert_eq!(cfg.param_count(), 287 * 256 + 4 * per_layer);
    assert_eq!(cfg.param_count(), 2_825_984);
    // No input projection when embedDim == hiddenSize.
    assert_eq!(GqaConfig::new(256).param_count(), 4 * per_layer);
}

#[test]
fn exact_param_count_matches_the_param_store() {
    for (e, h, nh, nkv, l) in [(287, 256, 8, 2, 4), (16, 16, 4, 1, 2), (7, 24, 6, 3, 3)] {
        let mut cfg = GqaConfig::new(e);
        cfg.hidden_size = h;
        cfg.num_heads = nh;
        cfg.num_kv_heads = nkv;
        cfg.num_layers = l;
        let model = GqaModel::new(cfg.clone()).unwrap();
        let counted: usize = model.params().iter().map(|(_, v)| v.elem_count()).sum();
        assert_eq!(model.params().total_elements(), counted);
        assert_eq!(cfg.param_count_exact(), counted as u64, "{cfg:?}");
        // Independent hand count.
        let d = h / nh;
        let (q, kv) = (nh * d, nkv * d);
        let input = if e != h { e * h + h } else { 0 };
        let layer = 2 * h
            + (h * q + q)
            + 2 * (h * kv + kv)
            + (q * h + h)
            + 2 * h
            + (4 * h * h + 4 * h)
            + (4 * h * h + h);
        assert_eq!(counted, input + l * layer + 2 * h);
        // Tensor count: 2 (input proj) + 16 per layer + 2 (final norm).
        assert_eq!(
            model.params().len(),
            if e != h { 2 } else { 0 } + 16 * l + 2
        );
    }
}

#[test]
fn config_json_round_trip_writes_every_option() {
    let cfg =
        GqaConfig::from_json(r#"{"embedDim":5,"rope":true,"outputMode":"mean_pool","seed":42}"#)
            .unwrap();
    let json = cfg.to_json();
    for key in [
        "embedDim",
        "hiddenSize",
        "numHeads",
        "numKvHeads",
        "numLayers",
        "dropout",
        "rope",
        "yarn",
        "yarnScale",
        "yarnOriginalMaxPosition",
        "seqLenHint",
        "outputMode",
        "seed",
    ] {
        assert!(
            json.contains(&format!("\"{key}\"")),
            "{key} missing in {json}"
        );
    }
    assert_eq!(GqaConfig::from_json(&json).unwrap(), cfg);
}

#[test]
fn options_with_long_decimals_survive_their_json_round_trip() {
    // Found by the head_fit_options fuzz target: serde_json's default float parsing was 1 ulp
    // off for this 60-digit number, so the parsed options re-parsed to a different value.
    let eps = format!("1{}", "3".repeat(60));
    let opts =
        gqa_core::train::FitOptions::from_json(&format!("{{\"eps\":\r\r\r{eps}\r\r\r}}")).unwrap();
    assert_eq!(opts.eps, eps.parse::<f64>().unwrap()); // Rust's parser is correctly rounded
    let back =
        gqa_core::train::FitOptions::from_json(&serde_json::to_string(&opts).unwrap()).unwrap();
    assert_eq!(back, opts);
}

/// Options as the bindings pass them (a `serde_json::Value` converted from a JS object) read as
/// their JSON text does: the same config or the same error, naming the same option.
#[test]
fn options_as_values_read_as_their_json_text() {
    let cases = [
        r#"{"embedDim":5,"rope":true,"outputMode":"mean_pool","seed":42}"#,
        r#"{"embedDim":4,"hiddenSize":28,"numHeads":7,"numKvHeads":2}"#,
        r#"{"embedDim":4,"numHeads":"four"}"#,
        r#"{"embedDim":4,"numHeadz":4}"#,
        r#"{"embedDim":4,"ropeScaling":{"type":"linear"}}"#,
        r#"{"embedDim":4,"ropeScaling":{"type":"sideways","factor":2}}"#,
        r#"{"hiddenSize":8}"#,
        r#"[1, 2]"#,
    ];
    for text in cases {
        let from_text = GqaConfig::from_json(text).map_err(|e| e.to_string());
        let from_value =
            GqaConfig::from_value(serde_json::from_str(text).unwrap()).map_err(|e| e.to_string());
        assert_eq!(from_value, from_text, "{text}");
    }
    // No options at all: the required embedDim is named; fit options take every default.
    let e = GqaConfig::from_value(serde_json::Value::Null).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidOption { option, .. } if option == "embedDim"),
        "{e}"
    );
    assert_eq!(
        gqa_core::train::FitOptions::from_value(serde_json::Value::Null).unwrap(),
        gqa_core::train::FitOptions::from_json("{}").unwrap()
    );
}

/// JavaScript has one number type and napi-rs hands integers beyond u32::MAX over as floats: a
/// float with no fractional part is read as the integer it equals; any other float is refused for
/// an integer option, naming it.
#[test]
fn integral_floats_read_as_integers() {
    let cfg =
        GqaConfig::from_value(serde_json::json!({"embedDim": 4.0, "seed": 5e9, "dropout": 0}))
            .unwrap();
    assert_eq!(
        (cfg.embed_dim, cfg.seed, cfg.dropout),
        (4, 5_000_000_000, 0.0)
    );
    let e = GqaConfig::from_value(serde_json::json!({"embedDim": 4.5})).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidOption { option, found, .. } if option == "embedDim" && found.contains("4.5")),
        "{e}"
    );
    let e = GqaConfig::from_value(serde_json::json!({"embedDim": -2.0})).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidOption { option, found, .. } if option == "embedDim" && found.contains("-2")),
        "{e}"
    );
}

/// serde reads an internally tagged enum (`head`, `ropeScaling`) from a buffer, so its errors
/// carry no field path; the field is still named (and a bad `loss` once came out as `head..`).
#[test]
fn errors_inside_tagged_enums_name_the_field() {
    use gqa_core::train::HeadConfig;
    let option = |r: gqa_core::Result<()>| match r {
        Err(Error::InvalidOption {
            option,
            expected,
            found,
        }) => (option, expected, found),
        other => panic!("expected InvalidOption, got {other:?}"),
    };
    let head = |j: &str| option(HeadConfig::from_json(j).map(|_| ()));
    let (o, e, f) = head(r#"{"type":"classification","numClasses":"3"}"#);
    assert_eq!(
        (o.as_str(), e.as_str(), f.as_str()),
        ("head.numClasses", "a non-negative integer", "string \"3\"")
    );
    let (o, e, f) = head(r#"{"type":"regression","outDim":2,"loss":"l1"}"#);
    assert_eq!(o, "head.loss");
    assert!(e.contains("mse") && f.contains("l1"), "{e} / {f}");
    assert_eq!(head(r#"{"type":"sideways","numClasses":3}"#).0, "head.type");
    assert_eq!(
        head(r#"{"type":"regression","outDim":2,"huberDelta":true}"#).0,
        "head.huberDelta"
    );
    assert_eq!(head("5").0, "head");
    let cfg = |j: &str| option(GqaConfig::from_json(j).map(|_| ()));
    assert_eq!(
        cfg(r#"{"embedDim":4,"ropeScaling":{"type":"linear","factor":"2"}}"#).0,
        "ropeScaling.factor"
    );
    assert_eq!(
        cfg(r#"{"embedDim":4,"ropeScaling":{"type":"sideways","factor":2}}"#).0,
        "ropeScaling.type"
    );
    assert_eq!(
        cfg(r#"{"embedDim":4,"outputMode":"first"}"#).0,
        "outputMode"
    );
}

/// Option errors speak JavaScript: serde's Rust type names become `integer`, `number`, `string`,
/// `boolean`, `object`, `array`, what was found is named the same way, and ranges are intervals.
#[test]
fn option_errors_use_javascript_terms() {
    use gqa_core::error::{js_expected, js_found};
    let e = |j: &str| match GqaConfig::from_json(j) {
        Err(Error::InvalidOption {
            option,
            expected,
            found,
        }) => (option, expected, found),
        other => panic!("{j}: expected InvalidOption, got {other:?}"),
    };
    assert_eq!(
        e(r#"{"embedDim":"2"}"#),
        (
            "embedDim".into(),
            "a non-negative integer".into(),
            "string \"2\"".into()
        )
    );
    assert_eq!(
        e(r#"{"embedDim":-1}"#),
        (
            "embedDim".into(),
            "a non-negative integer".into(),
            "integer -1".into()
        )
    );
    assert_eq!(
        e(r#"{"embedDim":2.5}"#),
        (
            "embedDim".into(),
            "a non-negative integer".into(),
            "number 2.5".into()
        )
    );
    assert_eq!(
        e(r#"{"embedDim":4,"dropout":"0.1"}"#),
        ("dropout".into(), "a number".into(), "string \"0.1\"".into())
    );
    assert_eq!(
        e(r#"{"embedDim":4,"rope":1}"#),
        ("rope".into(), "a boolean".into(), "integer 1".into())
    );
    assert_eq!(
        e(r#"{"embedDim":4,"ropeTheta":[1]}"#),
        ("ropeTheta".into(), "a number".into(), "an array".into())
    );
    assert_eq!(
        e(r#"{"embedDim":4,"numHeads":null}"#),
        (
            "numHeads".into(),
            "a non-negative integer".into(),
            "null".into()
        )
    );
    assert_eq!(
        e(r#"{"embedDim":4,"seqLenHint":{}}"#),
        (
            "seqLenHint".into(),
            "a non-negative integer".into(),
            "an object".into()
        )
    );
    let whole = e(r#""x""#);
    assert_eq!(
        (whole.0.as_str(), whole.2.as_str()),
        ("options", "string \"x\"")
    );
    for (g, want) in [
        ("u32", "an integer in [0, 4294967295]"),
        ("i32", "an integer in [-2147483648, 2147483647]"),
        ("f32", "a number"),
        ("a sequence", "an array"),
        ("a map", "an object"),
        ("struct HeadConfig", "an object"),
        ("a class index in 0..3", "a class index in [0, 3)"),
        (
            "an integer in 1..=1024 (the pool)",
            "an integer in [1, 1024] (the pool)",
        ),
        (
            "a sequence length dims[1] >= 1",
            "a sequence length dims[1] >= 1",
        ),
        ("one of `a`, `b`...", "one of `a`, `b`..."),
        ("a number in 1e-3..2", "a number in 1e-3..2"),
    ] {
        assert_eq!(js_expected(g), want, "{g}");
    }
    assert_eq!(js_found("boolean `true`"), "boolean true");
    assert_eq!(js_found("map"), "an object");
    assert_eq!(js_found("7"), "7");
}

#[test]
fn window_size_is_the_deprecated_name_of_seq_len_hint() {
    // Options and saved configs with the former name still load, as the current one.
    let old = GqaConfig::from_json(r#"{"embedDim":4,"windowSize":33}"#).unwrap();
    assert_eq!(old.seq_len_hint, 33);
    assert_eq!(
        old,
        GqaConfig::from_json(r#"{"embedDim":4,"seqLenHint":33}"#).unwrap()
    );
    // Written back under the current name only.
    let json = old.to_json();
    assert!(json.contains(r#""seqLenHint":33"#), "{json}");
    assert!(!json.contains("windowSize"), "{json}");
    let defaults: gqa_core::RecommendedDefaults =
        serde_json::from_str(&serde_json::to_string(&gqa_core::recommended_defaults()).unwrap())
            .unwrap();
    assert_eq!(defaults.seq_len_hint, 60);
    // Both names in one object: rejected, naming the deprecated one.
    assert_eq!(
        GqaConfig::from_json(r#"{"embedDim":4,"seqLenHint":33,"windowSize":7}"#).unwrap_err(),
        Error::InvalidOption {
            option: "windowSize".into(),
            expected: "only one of seqLenHint and windowSize (its deprecated name)".into(),
            found: "7".into(),
        }
    );
    // The same inside load options' `config`.
    match gqa_core::LoadOptions::from_json(
        r#"{"config":{"embedDim":4,"windowSize":7,"seqLenHint":7}}"#,
    ) {
        Err(Error::InvalidOption { option, .. }) => assert_eq!(option, "config.windowSize"),
        other => panic!("expected InvalidOption, got {other:?}"),
    }
    let load =
        gqa_core::LoadOptions::from_json(r#"{"config":{"embedDim":4,"windowSize":7}}"#).unwrap();
    assert_eq!(load.config.unwrap().seq_len_hint, 7);
    // A wrong type under the old name names the name that was written.
    match GqaConfig::from_json(r#"{"embedDim":4,"windowSize":"x"}"#) {
        Err(Error::InvalidOption { option, .. }) => assert_eq!(option, "windowSize"),
        other => panic!("expected InvalidOption, got {other:?}"),
    }
    assert_eq!(
        gqa_core::DEPRECATED_OPTION_NAMES
            .iter()
            .map(|d| (d.name, d.use_instead))
            .collect::<Vec<_>>(),
        [("windowSize", "seqLenHint")]
    );
}
