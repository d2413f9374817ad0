//! The static library linked into Rust binaries defines only names in shardalloc's own
//! namespaces: the public API as `shardalloc_mi_*` (every function of the header, none
//! missing) and internal symbols as `_sa_*`, `sa_*` or `shardalloc_*`. An unprefixed `mi_`
//! symbol, or any other global name, could clash with another allocator linked into the same
//! binary.

use std::collections::BTreeSet;
use std::process::Command;

/// Global symbols that the static library defines.
fn defined_symbols(lib: &str) -> BTreeSet<String> {
    let output = Command::new("nm")
        .args(["-g", "--defined-only", "-P", lib])
        .output()
        .expect("cannot run nm (from binutils)");
    assert!(output.status.success(), "nm {lib} failed: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        // `-P` prints "name type value size"; archive members appear as "lib.a[x.o]:".
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| !name.ends_with(':'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn static_library_defines_only_prefixed_symbols() {
    let lib = env!("SHARDALLOC_STATIC_LIB");
    let bad: Vec<String> = defined_symbols(lib)
        .into_iter()
        .filter(|name| {
            !(name.starts_with("shardalloc_")
                || name.starts_with("_sa_")
                || name.starts_with("sa_"))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "unprefixed global symbols in {lib}: {bad:?}"
    );
}

#[test]
fn every_public_function_is_defined_under_its_prefixed_name() {
    let lib = env!("SHARDALLOC_STATIC_LIB");
    let defined = defined_symbols(lib);
    let rename_h = include_str!("../c_src/include/shardalloc_rename.h");
    let mut missing = Vec::new();
    let mut count = 0;
    for line in rename_h.lines() {
        // "#define mi_xxx shardalloc_mi_xxx"
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let ["#define", plain, prefixed] = fields.as_slice() {
            assert_eq!(*prefixed, format!("shardalloc_{plain}"), "odd line: {line}");
            count += 1;
            if !defined.contains(*prefixed) {
                missing.push(*prefixed);
            }
        }
    }
    assert!(
        count > 40,
        "shardalloc_rename.h lists only {count} functions"
    );
    assert!(
        missing.is_empty(),
        "declared in shardalloc.h but not defined in {lib}: {missing:?}"
    );
}

/// Names `mi_xxx` listed in shardalloc_rename.h.
fn renamed_functions() -> Vec<String> {
    include_str!("../c_src/include/shardalloc_rename.h")
        .lines()
        .filter_map(|line| line.strip_prefix("#define mi_"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|name| format!("mi_{name}"))
        .collect()
}

#[test]
fn rename_header_is_fresh() {
    // The full check (with bindgen) is scripts/gen-bindings.sh --check in CI; this one needs
    // only sh and perl, so a plain `cargo test` notices a header change too.
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("sh")
        .arg(format!("{root}/c_src/tools/gen_rename.sh"))
        .arg(format!("{root}/c_src/include/shardalloc.h"))
        .output()
        .expect("cannot run c_src/tools/gen_rename.sh");
    assert!(output.status.success(), "gen_rename.sh failed: {output:?}");
    let generated = String::from_utf8(output.stdout).unwrap();
    let checked_in =
        std::fs::read_to_string(format!("{root}/c_src/include/shardalloc_rename.h")).unwrap();
    assert!(
        generated == checked_in,
        "c_src/include/shardalloc_rename.h is stale: run scripts/gen-bindings.sh"
    );
}

#[test]
fn bindings_declare_every_function() {
    let ffi = include_str!("../src/ffi.rs");
    let missing: Vec<String> = renamed_functions()
        .into_iter()
        .filter(|name| {
            !(ffi.contains(&format!("pub fn {name}("))
                && ffi.contains(&format!("\"\\u{{1}}shardalloc_{name}\"")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "src/ffi.rs lacks {missing:?}: run scripts/gen-bindings.sh"
    );
}
