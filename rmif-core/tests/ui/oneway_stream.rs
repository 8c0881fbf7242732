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
pub trait Feed {
    #[rmif(oneway)]
    async fn follow(&self) -> Result<rmif_core::Streaming<u64, MyError>, MyError>;
}

fn main() {}
