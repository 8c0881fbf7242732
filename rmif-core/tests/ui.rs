//! Compile errors of `#[service]`, pinned: each rule a service trait must follow, and the message
//! a user sees when breaking it.

#[test]
fn service_macro_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
