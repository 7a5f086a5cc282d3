//! The JSON shapes the bindings exchange with the TypeScript layer, as data: for each struct the
//! core (de)serialises across the boundary, the names of its fields as they appear in JSON
//! (camelCase). The TypeScript interfaces of `ts/` (`GqaOptions`, `FitOptions`, `StepReport`...)
//! are checked against this list by `test/schema.test.ts`, so a field added, renamed or removed
//! on one side fails the tests instead of drifting.
//!
//! The names come from serde itself: each struct is serialised from a sample in which every
//! optional field is present, so the list cannot disagree with the `#[serde]` attributes.
//!
//! The same module writes the committed schema files that the TypeScript types, the CLI's
//! defaults and help, and the error catalog are generated from ([`options_schema`],
//! [`error_catalog`]; command: [`GENERATE_COMMAND`]). The option structs and the error enum are
//! the one home of names, types, defaults and doc comments; `schemars` derives the schema from
//! their `#[serde]` attributes and doc comments, and `crates/gqa-core/tests/schema.rs` fails when
//! the committed files differ from what the structs give now.

use serde::Serialize;
use serde_json::{json, Value};

use crate::attention::AttentionConfig;
use crate::config::{recommended_defaults, GqaConfig};
use crate::error::{Error, ErrorField};
use crate::rope::RopeScaling;
use crate::train::trainer::{EvalReport, FitOptions, StepReport};
use crate::train::{HeadConfig, RegressionLoss};
use crate::weights::LoadOptions;

/// The JSON field names of `value` (a struct or an internally tagged enum variant), sorted.
fn keys<T: Serialize>(value: &T) -> Vec<String> {
    match serde_json::to_value(value).expect("plain data serialises") {
        serde_json::Value::Object(m) => {
            let mut k: Vec<String> = m.keys().cloned().collect();
            k.sort();
            k
        }
        other => panic!("expected a JSON object, found {other}"),
    }
}

/// The boundary types and their JSON field names: `(name, fields)`, where `name` is the Rust
/// type (and, for a head, its variant: `HeadConfig::Classification`).
///
/// Shapes: a list of `(type name, [field name])`, names sorted; every optional field is listed.
pub fn api_fields() -> Vec<(&'static str, Vec<String>)> {
    let scaling = Some(RopeScaling::Linear { factor: 2.0 });
    let mut model: GqaConfig = serde_json::from_str(r#"{"embedDim": 4}"#).expect("defaults");
    model.head_dim = Some(8);
    model.rope_scaling = scaling.clone();
    model.sliding_window = Some(16);
    let mut attention: AttentionConfig = serde_json::from_str("{}").expect("defaults");
    attention.head_dim = Some(8);
    attention.rope_scaling = scaling;
    attention.sliding_window = Some(16);
    let load = LoadOptions {
        config: Some(model.clone()),
        strict: true,
        prefix: Some("model.".into()),
        allow_extra: vec![],
    };
    let fit = FitOptions::default();
    let step = StepReport {
        epoch: 0,
        step_in_epoch: 0,
        steps_per_epoch: 1,
        global_step: 0,
        loss: 1.0,
        correct: 0,
        count: 1,
        tokens: 1,
        lr: 1e-3,
        grad_norm: Some(1.0),
    };
    let eval = EvalReport {
        loss: 1.0,
        accuracy: Some(1.0),
        predictions: vec![0],
        count: 1,
    };
    let classification = HeadConfig::Classification {
        num_classes: 2,
        class_weights: Some(vec![1.0, 1.0]),
    };
    let regression = HeadConfig::Regression {
        out_dim: 1,
        loss: RegressionLoss::Huber,
        huber_delta: 1.0,
    };
    vec![
        ("GqaConfig", keys(&model)),
        ("AttentionConfig", keys(&attention)),
        ("LoadOptions", keys(&load)),
        ("FitOptions", keys(&fit)),
        ("StepReport", keys(&step)),
        ("EvalReport", keys(&eval)),
        ("HeadConfig::Classification", keys(&classification)),
        ("HeadConfig::Regression", keys(&regression)),
        ("RecommendedDefaults", keys(&recommended_defaults())),
        ("ParamSpec", keys(&crate::layout::model_layout(&model)[0])),
    ]
}

/// [`api_fields`] as a value `{"GqaConfig": ["embedDim", ...], ...}` (what the bindings'
/// `apiFields()` return).
pub fn api_fields_value() -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = api_fields()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    serde_json::Value::Object(map)
}

/// The command that rewrites every generated file (the schema files under `schema/`, then the
/// TypeScript under `ts/generated/`), run from the repository root.
pub const GENERATE_COMMAND: &str =
    "cargo run --release -p gqa-core --example gen-schema && node scripts/gen-ts.mjs";

/// Path of the options schema, relative to the repository root.
pub const OPTIONS_SCHEMA_PATH: &str = "schema/options.schema.json";

/// Path of the error catalog, relative to the repository root.
pub const ERRORS_PATH: &str = "schema/errors.json";

/// The JSON Schema (draft 2020-12) of the model options, derived by `schemars` from
/// [`GqaConfig`], [`AttentionConfig`] and [`crate::RecommendedDefaults`] (and the enums they use,
/// [`crate::OutputMode`] and [`RopeScaling`]): JSON (camelCase) names, types, `required`, serde defaults as `default`, doc
/// comments as `description`, `additionalProperties: false` from `deny_unknown_fields`.
///
/// Shape: `{"$schema", "$comment", "title", "$ref": "#/$defs/GqaConfig", "$defs": {"GqaConfig",
/// "AttentionConfig", "RecommendedDefaults", "OutputMode", "RopeScaling"}, "x-deprecatedNames":
/// [{"name", "use", "reason"}]}`; the root validates a model's options. `x-deprecatedNames` lists
/// [`crate::DEPRECATED_OPTION_NAMES`]: former names the core still reads (serde aliases, which
/// the derived schema does not show; `scripts/gen-ts.mjs` adds them to `GqaOptions` as
/// `@deprecated`).
pub fn options_schema() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    generator.subschema_for::<GqaConfig>();
    generator.subschema_for::<AttentionConfig>();
    generator.subschema_for::<crate::RecommendedDefaults>();
    let defs = generator.take_definitions(true);
    let deprecated: Vec<Value> = crate::DEPRECATED_OPTION_NAMES
        .iter()
        .map(|d| json!({ "name": d.name, "use": d.use_instead, "reason": d.reason }))
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": format!("generated by `{GENERATE_COMMAND}` from crates/gqa-core (GqaConfig, AttentionConfig), do not edit"),
        "title": "gqa model options",
        "$ref": "#/$defs/GqaConfig",
        "$defs": defs,
        "x-deprecatedNames": deprecated,
    })
}

/// Every error code of the core with its description and fields, derived from [`Error`]: codes
/// and field names from [`Error::code`] / [`Error::fields`] on [`Error::samples`] (so in
/// [`crate::ERROR_CATALOG`] order), field types from [`ErrorField`] (`"string"` or `"number"`),
/// descriptions from the doc comments of the variants and their fields (through `schemars`).
///
/// Shape: `{"$comment", "errors": [{"code", "description", "fields": [{"name", "type",
/// "description"}]}]}`.
pub fn error_catalog() -> Value {
    let schema = schemars::schema_for!(Error).to_value();
    // Externally tagged: one `{"properties": {Variant: ...}, "description"}` per variant.
    let variants: Vec<&Value> = schema["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(schema["anyOf"].as_array().into_iter().flatten())
        .collect();
    let docs = |code: &str| -> Option<(String, Value)> {
        variants.iter().find_map(|v| {
            let (name, body) = v["properties"].as_object()?.iter().next()?;
            (screaming_snake(name) == code).then(|| {
                let d = v["description"].as_str().unwrap_or_default().to_string();
                (d, body.clone())
            })
        })
    };
    let errors: Vec<Value> = Error::samples()
        .iter()
        .map(|e| {
            let code = e.code();
            let (description, body) =
                docs(code).unwrap_or_else(|| panic!("no documented variant for error code {code}"));
            let fields: Vec<Value> = e
                .fields()
                .iter()
                .map(|(name, value)| {
                    let ty = match value {
                        ErrorField::Str(_) => "string",
                        ErrorField::Num(_) => "number",
                    };
                    // `fields()` names a Rust field in camelCase, except `name` (tensor /
                    // parameter) and the message of a tuple variant (`detail`).
                    let doc = body["properties"]
                        .as_object()
                        .and_then(|props| {
                            props
                                .iter()
                                .find(|(k, _)| camel(k) == *name)
                                .or_else(|| props.get_key_value("name"))
                        })
                        .and_then(|(_, p)| p["description"].as_str())
                        .unwrap_or(description.as_str());
                    json!({ "name": name, "type": ty, "description": doc })
                })
                .collect();
            json!({ "code": code, "description": description, "fields": fields })
        })
        .collect();
    json!({
        "$comment": format!("generated by `{GENERATE_COMMAND}` from crates/gqa-core/src/error.rs (Error), do not edit"),
        "errors": errors,
    })
}

/// A generated file's text: pretty JSON with a final newline (what the committed files hold).
pub fn file_text(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n"
}

/// `InvalidOption` -> `INVALID_OPTION`.
fn screaming_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// `looked_for` -> `lookedFor`.
fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in name.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_optional_field_is_listed() {
        let f: std::collections::HashMap<_, _> = api_fields().into_iter().collect();
        assert!(f["GqaConfig"].contains(&"headDim".to_string()));
        assert!(f["GqaConfig"].contains(&"ropeScaling".to_string()));
        assert!(f["AttentionConfig"].contains(&"ropeScaling".to_string()));
        assert!(f["StepReport"].contains(&"gradNorm".to_string()));
        assert_eq!(
            f["HeadConfig::Classification"],
            ["classWeights", "numClasses", "type"]
        );
        assert_eq!(f["LoadOptions"], ["config", "prefix", "strict"]);
    }
}
