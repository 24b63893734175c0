//! Every compile-time diagnostic of `#[horizon_plugin]` (`ui/fail/<area>/`)
//! and every form of tokio code it rewrites (`ui/pass/`).
//!
//! The `.stderr` snapshots follow the installed compiler (rustc 1.95.0);
//! regenerate with `TRYBUILD=overwrite cargo test -p ui-tests` and review.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
