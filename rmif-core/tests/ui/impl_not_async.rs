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

// `async` forgotten on the implementation.
impl Calculator for Local {
    fn add(&self, a: u64, b: u64) -> Result<u64, MyError> {
        Ok(a + b)
    }
}

fn main() {}
