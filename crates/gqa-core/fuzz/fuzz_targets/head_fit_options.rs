//! Any text given to the task-head and fit-option parsers: an error or valid options, never a
//! panic; parsed values survive their JSON round trip and pass their own validation.
#![no_main]
use gqa_core::train::{FitOptions, HeadConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(head) = HeadConfig::from_json(text) {
        head.validate().expect("a parsed head validates");
        let back = HeadConfig::from_json(&head.to_json()).expect("a parsed head re-parses");
        assert_eq!(back, head);
        assert!(head.out_dim() >= 1);
    }
    if let Ok(opts) = FitOptions::from_json(text) {
        opts.validate().expect("parsed fit options validate");
        let json = serde_json::to_string(&opts).expect("fit options serialise");
        let back = FitOptions::from_json(&json).expect("parsed fit options re-parse");
        assert_eq!(back, opts);
    }
});
