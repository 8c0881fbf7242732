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
    #[rmif(timeout_ms = 0)]
    async fn zero(&self) -> Result<(), MyError>;
    #[rmif(timeout_ms = "5")]
    async fn text(&self) -> Result<(), MyError>;
    #[rmif(timeout_ms)]
    async fn missing(&self) -> Result<(), MyError>;
    #[rmif(timeout_ms = 99999999999999999999999)]
    async fn huge(&self) -> Result<(), MyError>;
    #[rmif(idempotent = true)]
    async fn valued_flag(&self) -> Result<(), MyError>;
    #[rmif(oneway idempotent)]
    async fn not_a_list(&self) -> Result<(), MyError>;
}

fn main() {}
