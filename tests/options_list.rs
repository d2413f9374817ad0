//! The list of options is written down in several places; this test keeps them in step. The
//! source is C: the enum in `c_src/include/shardalloc.h` (order, names) and the table in
//! `c_src/src/options.c` (environment variable, default). Checked against it:
//!
//! - `Opt::ALL` (order, variant names, `to_ffi`, `env_var`), i.e. the list in `src/options.rs`;
//! - the `(default ...)` in each `Opt` variant's documentation and in the header's comments;
//! - a `Config` shorthand for every option;
//! - the values `options::get` returns in a fresh process with no `SHARDALLOC_*` variable;
//! - the rows of the README's options table (option, environment variable, default).

use std::collections::BTreeSet;
use std::fs;

use shardalloc::options::{self, Opt};
use shardalloc::{ffi, ShardAlloc};

mod common;
use common::{root, this_test_again};

#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

/// Set in the child process that prints the options' values.
const CHILD_ENV: &str = "OPTIONS_LIST_PRINT_VALUES";

/// An option's default, as the C table writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Default {
    Value(i64),
    /// On in builds with the C assertions (`SA_DEBUG > 0`), off in release builds.
    OnInDebugBuilds,
}

impl Default {
    /// The value at run time in this test's build (build.rs sets `SA_DEBUG` from the
    /// profile's debug assertions).
    fn value(self) -> i64 {
        match self {
            Default::Value(v) => v,
            Default::OnInDebugBuilds => cfg!(debug_assertions) as i64,
        }
    }
}

/// One option as the C sources describe it.
#[derive(Debug)]
struct COption {
    /// The enum constant without `mi_option_`: `purge_delay`.
    name: String,
    /// The `(default ...)` of the header comment, if it has one.
    header_default: Option<String>,
    /// The name in the C table, without `SHARDALLOC_`.
    env_name: String,
    default: Default,
}

fn read(path: &str) -> String {
    let full = root().join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start:?}")) + start.len();
    let len = text[from..]
        .find(end)
        .unwrap_or_else(|| panic!("no {end:?}"));
    &text[from..from + len]
}

/// `(default X)` or `(default: X)` in `text`: X up to the closing parenthesis.
fn default_text(text: &str) -> Option<String> {
    let from = text.find("(default")? + "(default".len();
    let len = text[from..].find(')')?;
    let words: Vec<&str> = text[from..from + len].split_whitespace().collect();
    Some(words.join(" ").trim_start_matches(':').trim().to_string())
}

/// A default as the documentation writes it: `off`, `on`, `25`, `4 (max 64)`, `4, at most
/// 64`, or the debug-build wording.
fn parse_default_text(text: &str) -> Default {
    if text.starts_with("on in debug") {
        return Default::OnInDebugBuilds;
    }
    let first = text.split([' ', ',']).next().unwrap_or("");
    match first {
        "off" => Default::Value(0),
        "on" => Default::Value(1),
        n => Default::Value(n.parse().unwrap_or_else(|_| panic!("default {text:?}"))),
    }
}

/// `0`, `4`, a `#define`d name of types.h, or `SA_DEBUG > 0`.
fn eval_c_default(expr: &str, types_h: &str) -> Default {
    if expr == "SA_DEBUG > 0" {
        return Default::OnInDebugBuilds;
    }
    if let Ok(v) = expr.parse() {
        return Default::Value(v);
    }
    let define = format!("#define {expr} ");
    let line = types_h
        .lines()
        .find(|l| l.starts_with(&define))
        .unwrap_or_else(|| panic!("default {expr:?}: no #define in types.h"));
    let value = line[define.len()..].split_whitespace().next().unwrap();
    Default::Value(value.parse().unwrap_or_else(|_| panic!("{line:?}")))
}

/// The C enum (header) joined with the C table (options.c), in enum order.
fn c_options() -> Vec<COption> {
    let header = read("c_src/include/shardalloc.h");
    let options_c = read("c_src/src/options.c");
    let types_h = read("c_src/src/types.h");

    // Each constant is followed by its comment, which may continue on the next lines.
    let body = between(&header, "typedef enum mi_option_e {", "} mi_option_t;");
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("mi_option_") {
            let (name, comment) = rest.split_once(',').expect("a comma after the constant");
            entries.push((name.to_string(), comment.to_string()));
        } else if line.starts_with("_mi_option_last") {
            break;
        } else if let Some(last) = entries.last_mut() {
            last.1.push(' ');
            last.1.push_str(line);
        }
    }

    let table = between(&options_c, "options[_mi_option_last] = {", "};");
    let rows: Vec<(String, String, String)> = table
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[mi_option_"))
        .map(|l| {
            let (name, rest) = l.split_once("] = {").expect("[mi_option_x] = {...}");
            let fields = rest.trim_end_matches("},").trim_end_matches('}');
            let mut parts = fields.rsplitn(3, ',').map(str::trim);
            let env = parts.next().unwrap().trim_matches('"').to_string();
            let _state = parts.next().unwrap();
            let default = parts.next().expect("three fields").to_string();
            (name.to_string(), env, default)
        })
        .collect();

    let enum_names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    let table_names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        enum_names, table_names,
        "the C table in options.c must have one row per enum constant, in enum order"
    );

    entries
        .into_iter()
        .zip(rows)
        .map(|((name, comment), (_, env_name, default))| {
            let comment = comment.trim().trim_start_matches("/*").trim();
            assert!(
                comment.starts_with(&format!("{}:", env_name)),
                "header comment of mi_option_{name} must start with {env_name}: {comment:?}"
            );
            assert_eq!(
                env_name,
                name.to_uppercase(),
                "mi_option_{name}: the environment variable follows the constant's name"
            );
            COption {
                header_default: default_text(comment),
                default: eval_c_default(&default, &types_h),
                name,
                env_name,
            }
        })
        .collect()
}

/// `purge_delay` -> `PurgeDelay`.
fn camel_case(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .unwrap()
                .to_uppercase()
                .chain(c)
                .collect::<String>()
        })
        .collect()
}

#[test]
fn rust_list_matches_the_c_enum_and_table() {
    let c = c_options();
    assert_eq!(c.len(), ffi::_mi_option_last as usize);
    let rust: Vec<String> = Opt::ALL.iter().map(|o| format!("{o:?}")).collect();
    let want: Vec<String> = c.iter().map(|o| camel_case(&o.name)).collect();
    assert_eq!(rust, want, "Opt::ALL against the C enum");
    for (i, (opt, c)) in Opt::ALL.iter().zip(&c).enumerate() {
        assert_eq!(opt.to_ffi() as usize, i, "{opt:?}.to_ffi()");
        assert_eq!(
            opt.env_var(),
            format!("SHARDALLOC_{}", c.env_name),
            "{opt:?}"
        );
    }
}

#[test]
fn documented_defaults_match_the_c_table() {
    let c = c_options();
    let source = read("src/options.rs");
    let list = between(&source, "\noptions! {\n", "\n}\n");
    // Each variant's documentation is the `///` lines before its `Name = constant, "ENV";`.
    let mut doc = String::new();
    let mut docs = Vec::new();
    for line in list.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            doc.push_str(text);
            doc.push(' ');
        } else if !line.is_empty() {
            docs.push((line.to_string(), std::mem::take(&mut doc)));
        }
    }
    assert_eq!(docs.len(), c.len(), "variants in the options! list");
    for ((decl, doc), c) in docs.iter().zip(&c) {
        let text = default_text(doc).unwrap_or_else(|| panic!("{decl}: no (default ...)"));
        assert_eq!(parse_default_text(&text), c.default, "rustdoc of {decl}");
        if let Some(text) = &c.header_default {
            let header = parse_default_text(text);
            assert_eq!(header, c.default, "header comment of mi_option_{}", c.name);
        }
    }
}

#[test]
fn config_has_a_shorthand_for_every_option() {
    let source = read("src/options.rs");
    let used: BTreeSet<String> = source
        .split("self.with(Opt::")
        .skip(1)
        .map(|s| s.split(',').next().unwrap().to_string())
        .collect();
    let all: BTreeSet<String> = Opt::ALL.iter().map(|o| format!("{o:?}")).collect();
    assert_eq!(used, all, "Config methods");
}

#[test]
fn runtime_defaults_match_the_c_table() {
    let mut cmd = this_test_again("print_values");
    cmd.env(CHILD_ENV, "1");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHARDALLOC_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child: {stdout}");
    let values: Vec<&str> = stdout
        .lines()
        // libtest may print its "test print_values ... " on the line of the first value.
        .filter_map(|l| l.split_once("option ").map(|(_, value)| value))
        .collect();
    let want: Vec<String> = c_options()
        .iter()
        .map(|c| format!("SHARDALLOC_{}={}", c.env_name, c.default.value()))
        .collect();
    assert_eq!(
        values, want,
        "options::get in a process without SHARDALLOC_*"
    );
}

/// The child of `runtime_defaults_match_the_c_table`; does nothing in a normal run.
#[test]
fn print_values() {
    if std::env::var_os(CHILD_ENV).is_some() {
        for opt in Opt::ALL {
            println!("option {}={}", opt.env_var(), options::get(opt));
        }
    }
}

#[test]
fn readme_table_matches_the_c_table() {
    let readme = read("README.md");
    let rows: Vec<Vec<String>> = readme
        .lines()
        .filter(|l| l.starts_with("| `") && l.contains("| `SHARDALLOC_"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect();
    let c = c_options();
    assert_eq!(rows.len(), c.len(), "rows of the README's options table");
    for (row, c) in rows.iter().zip(&c) {
        assert_eq!(row[0], camel_case(&c.name), "README row {row:?}");
        assert_eq!(
            row[1],
            format!("SHARDALLOC_{}", c.env_name),
            "README row {row:?}"
        );
        assert_eq!(parse_default_text(&row[2]), c.default, "README row {row:?}");
    }
}
