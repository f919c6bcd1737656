//! What users get from their choice of features, checked on fresh crates that depend on this
//! one. A PostgreSQL-only user who turns the default features off compiles no MySQL or SQLite
//! code: `cargo tree` of such a crate has neither `sqlx-mysql` nor `libsqlite3-sys`, while the
//! default features do bring them (so the check can fail). A build with no sqlx version is one
//! compile error, and an error of a sqlx version that is off is reported, not silently judged.

use std::path::Path;
use std::process::Command;

/// A fresh library crate that depends on this one as `spec`.
fn user_crate(spec: &str) -> tempfile::TempDir {
    user_program(spec, "", None)
}

/// A fresh crate that depends on this one as `spec`, and on `more` (lines of `[dependencies]`);
/// a binary with `main` as its `main.rs` when given, else an empty library.
fn user_program(spec: &str, more: &str, main: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"lean-user\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\ndb-retry = {{ path = {:?}, {spec} }}\n{more}\n[workspace]\n",
            here.display().to_string()
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    match main {
        Some(main) => std::fs::write(dir.path().join("src/main.rs"), main).unwrap(),
        None => std::fs::write(dir.path().join("src/lib.rs"), "").unwrap(),
    }
    // Start from our lock file so the tree resolves the versions we test with.
    std::fs::copy(here.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    dir
}

/// The normal (non-dev) dependency tree of a crate that depends on this one as `spec`.
fn tree_of_user_crate(spec: &str) -> String {
    let dir = user_crate(spec);
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--manifest-path",
        ])
        .arg(dir.path().join("Cargo.toml"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn has_crate(tree: &str, name: &str) -> bool {
    tree.lines()
        .any(|line| line.split_whitespace().next() == Some(name))
}

#[test]
fn postgres_only_build_has_no_mysql_or_sqlite_driver() {
    let tree =
        tree_of_user_crate("default-features = false, features = [\"sqlx09\", \"postgres\"]");
    assert!(
        has_crate(&tree, "sqlx-postgres"),
        "postgres driver present:\n{tree}"
    );
    for absent in ["sqlx-mysql", "sqlx-sqlite", "libsqlite3-sys"] {
        assert!(
            !has_crate(&tree, absent),
            "{absent} in a postgres-only build:\n{tree}"
        );
    }
    let sqlx_versions: Vec<&str> = tree
        .lines()
        .filter(|line| line.starts_with("sqlx-core "))
        .collect();
    assert!(
        sqlx_versions
            .iter()
            .all(|line| line.starts_with("sqlx-core v0.9")),
        "only sqlx 0.9: {sqlx_versions:?}"
    );
}

#[test]
fn default_build_brings_every_driver() {
    // Whatever this crate's version is, as a user's requirement on it.
    let tree = tree_of_user_crate(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION")));
    for present in [
        "sqlx-postgres",
        "sqlx-mysql",
        "sqlx-sqlite",
        "libsqlite3-sys",
    ] {
        assert!(
            has_crate(&tree, present),
            "{present} missing from the default build:\n{tree}"
        );
    }
}

/// Apart from ours, so builds of user crates neither wait for nor disturb the running one.
fn user_target_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("user-crates")
}

#[test]
fn no_sqlx_version_is_one_compile_error_that_names_the_features() {
    let dir = user_crate("default-features = false, features = [\"postgres\"]");
    let output = Command::new(env!("CARGO"))
        .args(["check", "--quiet", "--manifest-path"])
        .arg(dir.path().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", user_target_dir())
        .output()
        .expect("run cargo check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "built without a sqlx version:\n{stderr}"
    );
    assert!(
        stderr.contains("enable the feature `sqlx09`")
            && stderr.contains("`sqlx08`")
            && stderr.contains("`tokio-postgres`"),
        "the error names the features:\n{stderr}"
    );
    assert_eq!(
        stderr.matches("error:").count(),
        2,
        "one error (and cargo's summary):\n{stderr}"
    );
}

/// A sqlx 0.8 error in a build with only `sqlx09`: it cannot be classified, so it is permanent,
/// and the first such error logs one ERROR event that names the feature to enable.
#[test]
fn error_of_a_sqlx_version_that_is_off_is_reported_once() {
    let main = r#"
use db_retry::{Classify, ErrorClass};

fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    for _ in 0..3 {
        assert_eq!(sqlx::Error::PoolTimedOut.classify(), ErrorClass::Permanent);
    }
}
"#;
    let dir = user_program(
        "default-features = false, features = [\"sqlx09\", \"postgres\"]",
        "sqlx = { version = \"0.8.6\", default-features = false }\n\
         tracing-subscriber = { version = \"0.3\", features = [\"fmt\"] }\n",
        Some(main),
    );
    let output = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--manifest-path"])
        .arg(dir.path().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", user_target_dir())
        .output()
        .expect("run cargo run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the program failed:\n{stderr}");
    let reports = stderr
        .lines()
        .filter(|line| line.contains("ERROR"))
        .collect::<Vec<_>>();
    assert_eq!(
        reports.len(),
        1,
        "one ERROR event for three errors:\n{stderr}"
    );
    assert!(
        reports[0].contains("`sqlx08`") && reports[0].contains("db_retry"),
        "the event names the feature:\n{stderr}"
    );
}
