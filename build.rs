//! Generates the C header `include/iobus.h` from `src/ffi` with cbindgen.
//! The header is committed; `make test` checks that regenerating it changes
//! nothing. A failure here never breaks the Rust build: it is reported as a
//! warning and the committed header stays as it is.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let config = match cbindgen::Config::from_file(Path::new(&crate_dir).join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => {
            println!("cargo:warning=cbindgen.toml: {e}");
            return;
        }
    };
    let out = Path::new(&crate_dir).join("include/iobus.h");
    let generated =
        std::panic::catch_unwind(|| cbindgen::Builder::new().with_crate(&crate_dir).with_config(config).generate());
    match generated {
        Ok(Ok(bindings)) => {
            // Writes only when the content differs, so timestamps stay put.
            bindings.write_to_file(out);
        }
        Ok(Err(e)) => println!("cargo:warning=could not generate include/iobus.h: {e}"),
        Err(_) => println!("cargo:warning=could not generate include/iobus.h: cbindgen failed"),
    }
}
