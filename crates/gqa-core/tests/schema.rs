//! The committed schema files (`schema/options.schema.json`, `schema/errors.json`) against what
//! the option structs and the error enum give now: a field, default, doc comment or error code
//! changed in the core without regenerating fails here, naming the command that regenerates them
//! (the TypeScript generated from these files is checked by `npm run lint` and
//! `test/schema.test.ts`).

use std::path::Path;

use gqa_core::schema::{
    error_catalog, file_text, options_schema, ERRORS_PATH, GENERATE_COMMAND, OPTIONS_SCHEMA_PATH,
};

/// Compares a committed file with the generated value (as JSON values, so key order and
/// whitespace do not matter), then as text (so a hand-edited layout also fails).
fn check(path: &str, generated: serde_json::Value) {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    let text = std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("{path}: {e}; generate it with `{GENERATE_COMMAND}`"));
    let committed: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{path} is not JSON ({e}); regenerate it with `{GENERATE_COMMAND}`")
    });
    assert!(
        committed == generated,
        "{path} is out of date with the Rust definitions: run `{GENERATE_COMMAND}` and commit the result"
    );
    assert_eq!(
        text,
        file_text(&generated),
        "{path} was edited by hand: run `{GENERATE_COMMAND}`"
    );
}

#[test]
fn generated_schema_files_match_the_option_structs() {
    check(OPTIONS_SCHEMA_PATH, options_schema());
}

#[test]
fn generated_error_catalog_matches_the_error_enum() {
    check(ERRORS_PATH, error_catalog());
}

#[test]
fn options_schema_carries_names_defaults_and_docs_of_the_structs() {
    let s = options_schema();
    let model = &s["$defs"]["GqaConfig"];
    assert_eq!(model["required"], serde_json::json!(["embedDim"]));
    assert_eq!(model["additionalProperties"], false);
    let defaults = gqa_core::GqaConfig::new(1);
    let json: serde_json::Value = serde_json::from_str(&defaults.to_json()).unwrap();
    // Every default in the schema is what serde fills in.
    for (k, p) in model["properties"].as_object().unwrap() {
        if let Some(d) = p.get("default") {
            assert_eq!(d, &json[k], "default of {k}");
        }
        assert!(
            p["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{k} has a doc comment"
        );
    }
    let attention = &s["$defs"]["AttentionConfig"]["properties"];
    for (k, p) in attention.as_object().unwrap() {
        assert_eq!(
            &model["properties"][k], p,
            "attention option {k} as in the model"
        );
    }
}

#[test]
fn error_catalog_lists_every_code_with_typed_documented_fields() {
    let c = error_catalog();
    let errors = c["errors"].as_array().unwrap();
    let codes: Vec<&str> = errors.iter().map(|e| e["code"].as_str().unwrap()).collect();
    let want: Vec<&str> = gqa_core::ERROR_CATALOG.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, want);
    for (e, (_, fields)) in errors.iter().zip(gqa_core::ERROR_CATALOG) {
        let names: Vec<&str> = e["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, *fields);
        assert!(!e["description"].as_str().unwrap().is_empty());
    }
    assert_eq!(errors[9]["code"], "CACHE_FULL");
    assert_eq!(errors[9]["fields"][1]["type"], "number");
    assert_eq!(errors[0]["fields"][0]["type"], "string");
}
