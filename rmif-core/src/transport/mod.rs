//! Long-lived TCP connections shared by provider and consumer: a coalescing writer, liveness by
//! heartbeats, and an orderly close that says why.

mod link;
mod write_queue;

pub(crate) use link::{Link, Liveness, open_link};
