//! The scenarios, one module each. Each runs on a cluster that is up and has a leader (stall,
//! restart and size start their own), prints a line per figure as it goes, and records its
//! figures for the report; `load` is the write load several of them share.

pub mod discovery;
pub mod ephemeral;
pub mod failover;
pub mod fanout;
pub mod load;
pub mod restart;
pub mod size;
pub mod stall;
pub mod throughput;
pub mod watch;
