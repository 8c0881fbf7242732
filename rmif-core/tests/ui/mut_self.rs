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
pub trait Counter {
    async fn bump(&mut self) -> Result<u64, MyError>;
    async fn consume(self) -> Result<u64, MyError>;
    async fn boxed(self: Box<Self>) -> Result<u64, MyError>;
}
fn main() {}
