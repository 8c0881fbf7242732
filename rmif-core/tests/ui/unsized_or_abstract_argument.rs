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
pub trait Sink {
    async fn slice(&self, bytes: [u8]) -> Result<(), MyError>;
    async fn generic(&self, value: impl serde::Serialize) -> Result<(), MyError>;
    async fn object(&self, value: Box<dyn std::any::Any + Send>) -> Result<(), MyError>;
}

fn main() {}
