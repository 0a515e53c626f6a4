//! The compile errors `#[fly_postgres::mutation]` gives, pinned in
//! `tests/ui/*.stderr` (regenerate with `TRYBUILD=overwrite`).

#[test]
fn mistakes_are_compile_errors_that_say_what_to_write() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
