//! Compiles `src/analysis/raw_tree.c` (libpg_query's raw parse tree as an arena) against the
//! headers of the libpg_query that the `pg_query` crate builds and links.
//!
//! The headers are found through `cargo metadata` (the `pg_query` package this build locked),
//! or `SQLGUARD_LIBPG_QUERY_DIR` (a `libpg_query` directory) when set.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/analysis/raw_tree.c");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SQLGUARD_LIBPG_QUERY_DIR");
    let dir = libpg_query_dir();
    for header in [
        "pg_query.h",
        "src/pg_query_internal.h",
        "src/include/pg_query_outfuncs_defs.c",
    ] {
        if !dir.join(header).is_file() {
            panic!(
                "{} has no {header}: set SQLGUARD_LIBPG_QUERY_DIR to the libpg_query directory of \
                 the pg_query crate this build uses",
                dir.display()
            );
        }
    }
    let mut build = cc::Build::new();
    build
        .file("src/analysis/raw_tree.c")
        .include(&dir)
        .include(dir.join("vendor"))
        .include(dir.join("src"))
        .include(dir.join("src/postgres/include"))
        .include(dir.join("src/include"))
        .warnings(false);
    // As the pg_query crate builds libpg_query: the node layouts must be the same.
    let profile = env::var("PROFILE").unwrap_or_default();
    if profile == "debug" || env::var("DEBUG").as_deref() == Ok("1") {
        build.define("USE_ASSERT_CHECKING", None);
    }
    if !env::var("TARGET").unwrap_or_default().contains("msvc") {
        build.flag("-fno-strict-aliasing").flag("-fwrapv");
    }
    build.opt_level(3);
    build.compile("sqlguard_raw_tree");
}

/// The `libpg_query` directory of the `pg_query` package in this build's lock file.
fn libpg_query_dir() -> PathBuf {
    if let Some(dir) = env::var_os("SQLGUARD_LIBPG_QUERY_DIR") {
        return PathBuf::from(dir);
    }
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.toml");
    let mut tried = Vec::new();
    for flags in [&["--frozen"][..], &["--offline"][..], &[][..]] {
        let output = Command::new(&cargo)
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(&manifest)
            .args(flags)
            .env_remove("CARGO_TARGET_DIR")
            .output();
        match output {
            Ok(o) if o.status.success() => {
                if let Some(dir) = pg_query_in(&o.stdout) {
                    return dir;
                }
                tried.push(format!("cargo metadata {flags:?}: no pg_query package"));
            }
            Ok(o) => tried.push(format!(
                "cargo metadata {flags:?}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => tried.push(format!("cargo metadata {flags:?}: {e}")),
        }
    }
    panic!(
        "cannot find the pg_query crate's libpg_query sources ({}); set SQLGUARD_LIBPG_QUERY_DIR",
        tried.join("; ")
    );
}

fn pg_query_in(metadata: &[u8]) -> Option<PathBuf> {
    let doc: serde_json::Value = serde_json::from_slice(metadata).ok()?;
    let package = doc["packages"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "pg_query")?;
    let manifest = Path::new(package["manifest_path"].as_str()?);
    Some(manifest.parent()?.join("libpg_query"))
}
