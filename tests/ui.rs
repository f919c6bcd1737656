//! Compile tests for `#[db_retry]`: signatures that must compile (`tests/ui/pass`) and mistakes
//! that must give one clear error on the offending token (`tests/ui/fail`, with the expected
//! `.stderr` checked in). Regenerate with `TRYBUILD=overwrite cargo test --test ui` and read every
//! changed `.stderr` before committing it.
//!
//! The `.stderr` files quote rustc, whose wording changes between releases, so they are compared
//! only on the compiler they were written with. On another compiler the passing cases still run
//! and the test says which snapshots it did not compare, unless `DB_RETRY_UI_STRICT` is set, as
//! `.ci/run` sets it: then another compiler is a failure that says to re-bless the snapshots.

use std::process::Command;

/// The `rustc -V` the `.stderr` snapshots were written with.
const SNAPSHOT_RUSTC: &str = "rustc 1.95.0 (59807616e 2026-04-14)";

fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(&rustc)
        .arg("-V")
        .output()
        .unwrap_or_else(|error| panic!("running `{rustc} -V`: {error}"));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    let rustc = rustc_version();
    if rustc == SNAPSHOT_RUSTC {
        t.compile_fail("tests/ui/fail/*.rs");
    } else if std::env::var_os("DB_RETRY_UI_STRICT").is_some() {
        panic!(
            "tests/ui/fail/*.stderr were written with `{SNAPSHOT_RUSTC}` and this is `{rustc}`: \
             run `TRYBUILD=overwrite cargo test --test ui`, read every changed .stderr, and \
             update SNAPSHOT_RUSTC in tests/ui.rs"
        );
    } else {
        eprintln!(
            "tests/ui/fail/*.stderr NOT compared: they were written with `{SNAPSHOT_RUSTC}` and \
             this is `{rustc}`; run `cargo +1.95.0 test --test ui` to compare them"
        );
    }
}
