//! Test support shared by rmif's multi-process tests: registry members, providers and consumers
//! run as real processes on loopback (so that tests can SIGKILL, SIGSTOP and restart them), and a
//! TCP proxy that cuts and delays the links between them; and a cluster whose members run in the
//! test process ([`local`]), where processes are not needed.
//!
//! The programs come from the workspace's target directory: `cargo test --workspace` builds
//! them all before any test runs.

#![deny(missing_debug_implementations, rust_2018_idioms)]

pub mod cluster;
pub mod local;
pub mod process;
pub mod proxy;

pub use cluster::{Cluster, Member, Settings};
pub use process::{Process, free_port, program, send_signal};
