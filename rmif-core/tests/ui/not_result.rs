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
    async fn add(&self, a: u64, b: u64) -> u64;
    async fn ping(&self);
}
fn main() {}
