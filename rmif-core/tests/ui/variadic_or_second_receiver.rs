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
    async fn take(&self, first: u64, _: ...) -> Result<(), MyError>;
}

#[rmif_core::service]
pub trait Twice {
    async fn twice(&self, first: u64, self: &Self) -> Result<(), MyError>;
}

fn main() {}
