//! The calculator service of the examples: its contract, shared by provider and consumer, and
//! the provider's implementation.

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
}

/// The provider's implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Arithmetic;

impl Calculator for Arithmetic {
    async fn add(&self, a: u64, b: u64) -> Result<u64, CalcError> {
        a.checked_add(b).ok_or(CalcError::Overflow(a, b))
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        if b == 0 {
            return Err(CalcError::DivisionByZero);
        }
        Ok(a.wrapping_div(b))
    }

    async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, CalcError> {
        Ok(body)
    }
}
