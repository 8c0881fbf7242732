#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum MyError {
    Rpc(rmif_core::Error),
}

impl From<rmif_core::Error> for MyError {
    fn from(error: rmif_core::Error) -> Self {
        MyError::Rpc(error)
    }
}

pub struct Opaque;

#[rmif_core::service]
pub trait Sink {
    async fn take(&self, value: Opaque) -> Result<(), MyError>;
}
fn main() {}
