//! Multi-process tests of the registry: members are real processes, killed with SIGKILL.

mod errors;
mod huge_pages;
mod linearizability;
mod load;
mod logs;
mod member_log;
mod member_logs;
mod replication;
mod restart;
mod sessions;
mod shutdown;
mod snapshots;
mod torture;
