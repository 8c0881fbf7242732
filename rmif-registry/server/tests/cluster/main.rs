//! Multi-process tests of the registry: members are real processes, killed with SIGKILL.

mod errors;
mod linearizability;
mod logs;
mod replication;
mod sessions;
mod snapshots;
mod torture;
