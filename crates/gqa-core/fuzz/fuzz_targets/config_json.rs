//! Any text given to the option parsers (model config, attention config, load options): an
//! error or a valid config, never a panic; a config that parses survives its own JSON round
//! trip unchanged, and its size figures do not overflow into a panic.
#![no_main]
use gqa_core::{AttentionConfig, GqaConfig, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = GqaConfig::from_json(text) {
        let back = GqaConfig::from_json(&cfg.to_json()).expect("a parsed config re-parses");
        assert_eq!(back, cfg);
        let _ = (
            cfg.param_count(),
            cfg.param_count_exact(),
            cfg.kv_cache_bytes_per_token(),
            cfg.output_size(),
        );
    }
    if let Ok(cfg) = AttentionConfig::from_json(text) {
        let back = AttentionConfig::from_json(&cfg.to_json())
            .expect("a parsed attention config re-parses");
        assert_eq!(back, cfg);
    }
    let _ = serde_json::from_str::<LoadOptions>(text);
});
