//! What the load generator calls: the same two calls on every system.

use std::future::Future;

/// One connection's worth of client, cloned into every caller task. Generic rather than `dyn`
/// so that the harness adds no boxing of its own to any system.
pub trait Caller: Clone + Send + Sync + 'static {
    fn add(&self, a: u64, b: u64) -> impl Future<Output = Result<u64, String>> + Send;
    fn echo(&self, body: Vec<u8>) -> impl Future<Output = Result<Vec<u8>, String>> + Send;

    /// The echo with a shared `Bytes` body, for systems whose contract can take one (the
    /// others run the `Vec<u8>` echo in its place: see `Scenario::effective_for`).
    fn echo_bytes(
        &self,
        body: bytes::Bytes,
    ) -> impl Future<Output = Result<bytes::Bytes, String>> + Send {
        let echoed = self.echo(body.to_vec());
        async move { echoed.await.map(bytes::Bytes::from) }
    }
}
