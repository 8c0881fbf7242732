#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum MyError {
    Rpc(rmif_core::Error),
}

impl From<rmif_core::Error> for MyError {
    fn from(error: rmif_core::Error) -> Self {
        MyError::Rpc(error)
    }
}

// FNV-1a 32 maps both names to the same method id.
#[rmif_core::service]
pub trait Clash {
    async fn glbvs(&self) -> Result<(), MyError>;
    async fn yacxa(&self) -> Result<(), MyError>;
}

fn main() {}
