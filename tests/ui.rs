//! Compile tests for `#[db_retry]`: signatures that must compile (`tests/ui/pass`) and mistakes
//! that must give one clear error on the offending token (`tests/ui/fail`, with the expected
//! `.stderr` checked in). Regenerate with `TRYBUILD=overwrite cargo test --test ui` and read every
//! changed `.stderr` before committing it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
