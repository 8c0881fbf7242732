//! End-to-end tests of rmif-core: a provider and consumers talking over loopback TCP, and
//! hand-made frames for what a well-behaved consumer never sends.

mod bad_input;
mod balancing;
mod calls;
mod layers;
mod lifecycle;
mod protocol;
mod raw;
mod support;
