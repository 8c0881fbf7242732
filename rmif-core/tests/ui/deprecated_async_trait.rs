// The warning is made an error so that the case fails to compile and its message is pinned.
#![deny(deprecated)]

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum MyError {
    Rpc(rmif_core::Error),
}

impl From<rmif_core::Error> for MyError {
    fn from(error: rmif_core::Error) -> Self {
        MyError::Rpc(error)
    }
}

#[rmif_core::service]
pub trait Calculator {
    async fn add(&self, a: u64, b: u64) -> Result<u64, MyError>;
}

struct Local;

// Written for an earlier version, when implementations needed the attribute.
#[rmif_core::async_trait]
impl Calculator for Local {
    async fn add(&self, a: u64, b: u64) -> Result<u64, MyError> {
        Ok(a + b)
    }
}

fn main() {}
