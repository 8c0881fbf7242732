//! The signal a service process stops on: Ctrl-C, or SIGTERM (what init systems and container
//! runtimes send) on Unix.

/// Resolves on Ctrl-C or, on Unix, SIGTERM: what [`crate::ServerHandle::run_until`] and
/// application lifecycles wait for before a graceful shutdown.
///
/// ```no_run
/// # async fn demo(server: rmif_core::ServerHandle) {
/// // Serve until the process is asked to stop, then drain and stop.
/// let report = server.run_until(rmif_core::shutdown_signal()).await;
/// println!("drained: {}", report.drained);
/// # }
/// ```
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            // No SIGTERM handler could be installed: Ctrl-C still stops the process.
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
