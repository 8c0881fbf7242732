//! What the benches share: their common options, measurement and report, and the helper
//! processes they run (each bench binary re-executes itself as a server or a session holder).

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod cpu;
pub mod helper;
pub mod machine;
pub mod measure;
pub mod options;
pub mod report;

/// The multi-threaded runtime that every bench process, parent or helper, runs on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
