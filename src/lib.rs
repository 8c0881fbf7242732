//! Shared code of the examples, benchmarks and cross-crate tests.
