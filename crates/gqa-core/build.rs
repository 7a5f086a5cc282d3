//! Sets `cfg(gqa_threads)` where the target can run threads: every native target, and wasm32
//! built with `+atomics` (the threaded wasm module: shared memory and a rayon pool on Web
//! Workers / worker_threads, see `bindings/wasm`). The single-threaded wasm module has no
//! threads and runs every kernel on the calling thread.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(gqa_threads)");
    println!("cargo::rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if arch != "wasm32" || features.split(',').any(|f| f == "atomics") {
        println!("cargo::rustc-cfg=gqa_threads");
    }
}
