//! The kernel's face: crates reach the kernel and its plug-ins only through what their roots
//! re-export, and through the few modules that are public on purpose. A path such as
//! `strata_engine::run::Run` anywhere in the tree fails this test.

use std::path::{Path, PathBuf};

/// Kernel-family crates and the modules each makes public on purpose.
const PUBLIC_MODULES: &[(&str, &[&str])] = &[
    ("strata_engine", &["format", "sync", "conformance"]),
    ("strata_wal", &[]),
    ("strata_index_inmem", &[]),
    ("strata_index_disk", &[]),
    ("strata_compactor", &[]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Module paths `krate::module::` used in `text`, including inside `use krate::{...}` groups.
fn module_paths(text: &str, krate: &str) -> Vec<String> {
    let mut found = Vec::new();
    let prefix = format!("{krate}::");
    let mut rest = text;
    while let Some(at) = rest.find(&prefix) {
        rest = &rest[at + prefix.len()..];
        let group = if let Some(inner) = rest.strip_prefix('{') {
            &inner[..inner.find('}').unwrap_or(inner.len())]
        } else {
            rest
        };
        for item in group.split(',') {
            let item = item.trim();
            let ident: String = item
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let lower = ident.chars().next().is_some_and(|c| c.is_ascii_lowercase());
            if lower && item[ident.len()..].starts_with("::") {
                found.push(ident);
            }
            if !rest.starts_with('{') {
                break;
            }
        }
    }
    found
}

#[test]
fn no_crate_reaches_past_a_kernel_root() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut reaches = Vec::new();
    // This file spells out reaches on purpose, to test the checker.
    for file in files
        .iter()
        .filter(|f| !f.ends_with("tests/architecture.rs"))
    {
        let text = std::fs::read_to_string(file).unwrap();
        for (krate, public) in PUBLIC_MODULES {
            for module in module_paths(&text, krate) {
                if !public.contains(&module.as_str()) {
                    reaches.push(format!("{}: {krate}::{module}::", file.display()));
                }
            }
        }
    }
    assert!(
        reaches.is_empty(),
        "paths past a kernel root:\n{}",
        reaches.join("\n")
    );
}

#[test]
fn kernel_roots_declare_only_their_public_modules() {
    for (krate, public) in PUBLIC_MODULES {
        let dir = krate.trim_start_matches("strata_").replace('_', "-");
        let lib = root().join(&dir).join("src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap_or_else(|e| panic!("{lib:?}: {e}"));
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("pub mod "))
        {
            let name = line
                .trim()
                .trim_start_matches("pub mod ")
                .trim_end_matches(';');
            assert!(
                public.contains(&name),
                "{}: `pub mod {name}`",
                lib.display()
            );
        }
    }
}

#[test]
fn the_checker_finds_a_reach() {
    let text =
        "use strata_engine::run::Run;\nuse strata_engine::{format::DB_FILE, shard::Shard, Db};";
    assert_eq!(
        module_paths(text, "strata_engine"),
        ["run", "format", "shard"]
    );
}
