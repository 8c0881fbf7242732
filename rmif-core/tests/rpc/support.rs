//! A test service and helpers to run a provider and a consumer on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use rmif_core::{
    CallContext, Client, ConsumerConfig, ProviderConfig, Server, ServerHandle, Streaming,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum CalcError {
    #[error("division by zero")]
    DivisionByZero,
    #[error("stopped at {0}")]
    Stopped(u32),
    #[error(transparent)]
    Rpc(#[from] rmif_core::Error),
}

#[rmif_core::service(name = "test.Calculator")]
pub trait Calculator {
    async fn add(&self, a: u64, b: u64) -> Result<u64, CalcError>;
    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, CalcError>;
    async fn nothing(&self) -> Result<(), CalcError>;
    #[rmif(timeout_ms = 300)]
    async fn sleep_ms(&self, ms: u64) -> Result<u64, CalcError>;
    /// Blocks until released; counts starts and cancellations.
    async fn park(&self) -> Result<(), CalcError>;
    async fn remaining_ms(&self) -> Result<Option<u64>, CalcError>;
    /// The `trace` metadata entry the call arrived with.
    async fn trace(&self) -> Result<Option<String>, CalcError>;
    #[rmif(oneway)]
    async fn record(&self, value: u64) -> Result<(), CalcError>;
    async fn recorded(&self) -> Result<u64, CalcError>;
    async fn count(
        &self,
        to: u32,
        fail_at: Option<u32>,
    ) -> Result<Streaming<u32, CalcError>, CalcError>;
    async fn panics(&self) -> Result<(), CalcError>;
    /// Panics after awaiting once (so in a task of its own on the provider).
    async fn panics_later(&self) -> Result<(), CalcError>;
}

#[derive(Default)]
pub struct Probe {
    pub parked: AtomicUsize,
    pub dropped: AtomicUsize,
    pub release: Notify,
    pub recorded: AtomicUsize,
    pub streamed: AtomicUsize,
}

#[derive(Clone, Default)]
pub struct LocalCalculator {
    pub probe: Arc<Probe>,
}

struct DropCounter(Arc<Probe>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl Calculator for LocalCalculator {
    async fn add(&self, a: u64, b: u64) -> Result<u64, CalcError> {
        Ok(a.wrapping_add(b))
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        if b == 0 {
            return Err(CalcError::DivisionByZero);
        }
        Ok(a / b)
    }

    async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, CalcError> {
        Ok(body)
    }

    async fn nothing(&self) -> Result<(), CalcError> {
        Ok(())
    }

    async fn sleep_ms(&self, ms: u64) -> Result<u64, CalcError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    }

    async fn park(&self) -> Result<(), CalcError> {
        let _guard = DropCounter(self.probe.clone());
        let released = self.probe.release.notified();
        self.probe.parked.fetch_add(1, Ordering::SeqCst);
        released.await;
        Ok(())
    }

    async fn remaining_ms(&self) -> Result<Option<u64>, CalcError> {
        Ok(CallContext::current()
            .and_then(|c| c.remaining())
            .map(|d| d.as_millis() as u64))
    }

    async fn trace(&self) -> Result<Option<String>, CalcError> {
        Ok(CallContext::current().and_then(|c| c.metadata().get("trace").map(str::to_owned)))
    }

    async fn record(&self, value: u64) -> Result<(), CalcError> {
        self.probe
            .recorded
            .fetch_add(value as usize, Ordering::SeqCst);
        Ok(())
    }

    async fn recorded(&self) -> Result<u64, CalcError> {
        Ok(self.probe.recorded.load(Ordering::SeqCst) as u64)
    }

    async fn count(
        &self,
        to: u32,
        fail_at: Option<u32>,
    ) -> Result<Streaming<u32, CalcError>, CalcError> {
        if to == 0 {
            return Err(CalcError::Stopped(0));
        }
        let probe = self.probe.clone();
        Ok(futures_util::stream::iter(1..=to)
            .map(move |i| {
                probe.streamed.fetch_add(1, Ordering::SeqCst);
                if Some(i) == fail_at {
                    Err(CalcError::Stopped(i))
                } else {
                    Ok(i)
                }
            })
            .boxed())
    }

    async fn panics(&self) -> Result<(), CalcError> {
        panic!("deliberate panic in a handler");
    }

    async fn panics_later(&self) -> Result<(), CalcError> {
        tokio::task::yield_now().await;
        panic!("deliberate panic after an await");
    }
}

/// A provider of [`LocalCalculator`] on a free loopback port.
pub async fn start_provider(config: ProviderConfig) -> (ServerHandle, Arc<Probe>) {
    let calculator = LocalCalculator::default();
    let probe = calculator.probe.clone();
    let server = Server::builder(config)
        .add_service(CalculatorProvider::new(calculator))
        .serve()
        .await
        .expect("provider starts");
    (server, probe)
}

/// A consumer configuration that calls `providers`.
pub fn consumer_config(providers: &[&ServerHandle]) -> ConsumerConfig {
    ConsumerConfig {
        static_providers: providers.iter().map(|p| p.local_addr()).collect(),
        ..ConsumerConfig::default()
    }
}

/// A consumer stub for `providers`.
pub fn consumer(providers: &[&ServerHandle]) -> CalculatorConsumer {
    Client::with_static_providers(consumer_config(providers)).stub()
}

/// Waits until `condition` holds, failing the test after 5 seconds.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
