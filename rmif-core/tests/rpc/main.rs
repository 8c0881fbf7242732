//! End-to-end tests of rmif-core: a provider and a consumer talking over loopback TCP.

mod calls;
mod support;
