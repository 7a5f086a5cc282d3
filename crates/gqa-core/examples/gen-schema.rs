//! Writes the committed schema files derived from the core's option structs and error enum:
//! `schema/options.schema.json` ([`gqa_core::schema::options_schema`]) and `schema/errors.json`
//! ([`gqa_core::schema::error_catalog`]). Run from anywhere:
//! `cargo run --release -p gqa-core --example gen-schema`, then `node scripts/gen-ts.mjs` to
//! regenerate the TypeScript from them. `crates/gqa-core/tests/schema.rs` checks the files.

use std::path::Path;

use gqa_core::schema::{
    error_catalog, file_text, options_schema, ERRORS_PATH, OPTIONS_SCHEMA_PATH,
};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::create_dir_all(root.join("schema"))?;
    for (path, value) in [
        (OPTIONS_SCHEMA_PATH, options_schema()),
        (ERRORS_PATH, error_catalog()),
    ] {
        std::fs::write(root.join(path), file_text(&value))?;
        println!("wrote {path}");
    }
    Ok(())
}
