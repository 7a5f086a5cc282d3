//! The JSON shapes the bindings exchange with the TypeScript layer, as data: for each struct the
//! core (de)serialises across the boundary, the names of its fields as they appear in JSON
//! (camelCase). The TypeScript interfaces of `ts/` (`GqaOptions`, `FitOptions`, `StepReport`...)
//! are checked against this list by `test/schema.test.ts`, so a field added, renamed or removed
//! on one side fails the tests instead of drifting.
//!
//! The names come from serde itself: each struct is serialised from a sample in which every
//! optional field is present, so the list cannot disagree with the `#[serde]` attributes.

use serde::Serialize;

use crate::attention::AttentionConfig;
use crate::config::{recommended_defaults, GqaConfig};
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
    let mut attention: AttentionConfig = serde_json::from_str("{}").expect("defaults");
    attention.head_dim = Some(8);
    attention.rope_scaling = scaling;
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
