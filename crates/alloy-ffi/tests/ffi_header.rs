//! `cshim/alloy.h` must be what cbindgen generates from `crates/alloy-ffi/src/ffi.rs` and
//! `src/stream.rs` now.
//! Set `ALLOY_BLESS=1` to rewrite the header instead of failing.

use std::path::Path;

/// The repository root: cshim/ is shared with the Go bridge, two levels
/// above this crate.
fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn generate() -> String {
    let krate = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(repo().join("cshim/cbindgen.toml"))
        .expect("cshim/cbindgen.toml parses");
    // Only src/ffi.rs and src/stream.rs: the ABI lives there, and other
    // modules' public constants must not leak into the header.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(krate.join("src/ffi.rs"))
        .with_src(krate.join("src/stream.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("header is UTF-8")
}

#[test]
fn header_is_up_to_date() {
    let path = repo().join("cshim/alloy.h");
    let fresh = generate();
    if std::env::var_os("ALLOY_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write cshim/alloy.h");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == fresh,
        "cshim/alloy.h is out of date with src/ffi.rs and src/stream.rs; regenerate it with \
         `ALLOY_BLESS=1 cargo test --release -p alloy-ffi --test ffi_header`"
    );
}

#[test]
fn header_declares_the_whole_abi() {
    let fresh = generate();
    for symbol in [
        "alloy_call_arrays",
        "alloy_call_batches",
        "alloy_has_handler",
        "alloy_set_log_level",
        "alloy_set_log_fd",
        "alloy_live_counts",
        "alloy_string_free",
        "struct AlloyLiveCounts",
        "#define ALLOY_ERR_PANIC -5",
        "struct ArrowArray *arrays",
        "alloy_ring_open_stream",
        "alloy_ring_publish_stream",
        "alloy_stream_options_init",
        "alloy_publish_options_init",
        "struct AlloyStreamOptions",
        "struct AlloyPublishOptions",
        "struct AlloyPublishCounts",
        "#define ALLOY_ERR_TIMEOUT -8",
        "#define ALLOY_MODE_CDATA 1",
        "struct ArrowArrayStream *out",
        "struct ArrowArrayStream {",
    ] {
        assert!(fresh.contains(symbol), "header lacks {symbol:?}:\n{fresh}");
    }
}
