//! The calculator service of the examples: its contract, shared by provider and consumer, and
//! the provider's implementation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What can go wrong in a calculator call, application errors and transport errors alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum CalcError {
    /// `div` by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// `add` overflowed `u64`.
    #[error("{0} + {1} overflows")]
    Overflow(u64, u64),
    /// The call itself failed (timeout, no provider, connection lost, …).
    #[error(transparent)]
    Rpc(#[from] rmif_core::Error),
}

/// A calculator, served remotely by `calculator_provider`.
#[rmif_core::service]
pub trait Calculator {
    /// `a + b`, or [`CalcError::Overflow`].
    #[rmif(idempotent)]
    async fn add(&self, a: u64, b: u64) -> Result<u64, CalcError>;

    /// `a / b` rounded toward zero, or [`CalcError::DivisionByZero`].
    #[rmif(idempotent)]
    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;

    /// Returns `body` unchanged.
    #[rmif(idempotent)]
    async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, CalcError>;

    /// Returns `body` unchanged, as shared bytes (which travel as bytes, as `Vec<u8>` does).
    #[rmif(idempotent)]
    async fn echo_bytes(&self, body: bytes::Bytes) -> Result<bytes::Bytes, CalcError>;

    /// Adds `amount` to the provider's running total and returns the new total. Not
    /// idempotent: a call that may have run is never sent again, since that could add twice.
    async fn accumulate(&self, amount: u64) -> Result<u64, CalcError>;
}

/// The provider's implementation.
#[derive(Debug, Clone, Default)]
pub struct Arithmetic {
    total: Arc<AtomicU64>,
    work: Duration,
}

impl Arithmetic {
    /// A calculator whose calls answer at once.
    pub fn new() -> Self {
        Arithmetic::default()
    }

    /// Makes every call wait `work` before answering, as a handler awaiting a database or
    /// another service would.
    pub fn with_work(mut self, work: Duration) -> Self {
        self.work = work;
        self
    }

    async fn work(&self) {
        if !self.work.is_zero() {
            tokio::time::sleep(self.work).await;
        }
    }
}

impl Calculator for Arithmetic {
    async fn add(&self, a: u64, b: u64) -> Result<u64, CalcError> {
        self.work().await;
        a.checked_add(b).ok_or(CalcError::Overflow(a, b))
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        self.work().await;
        if b == 0 {
            return Err(CalcError::DivisionByZero);
        }
        Ok(a.wrapping_div(b))
    }

    async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, CalcError> {
        self.work().await;
        Ok(body)
    }

    async fn echo_bytes(&self, body: bytes::Bytes) -> Result<bytes::Bytes, CalcError> {
        self.work().await;
        Ok(body)
    }

    async fn accumulate(&self, amount: u64) -> Result<u64, CalcError> {
        self.work().await;
        self.total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                total.checked_add(amount)
            })
            .map(|before| before + amount)
            .map_err(|total| CalcError::Overflow(total, amount))
    }
}
