//! The scenarios, one module each. Each runs on a cluster that is up and has a leader, prints a
//! line per figure as it goes, and records its figures for the report.

pub mod discovery;
pub mod ephemeral;
pub mod failover;
pub mod fanout;
pub mod throughput;
pub mod watch;
