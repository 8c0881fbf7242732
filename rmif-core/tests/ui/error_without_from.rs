#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum PlainError {
    Failed,
}

#[rmif_core::service]
pub trait Calculator {
    async fn add(&self, a: u64, b: u64) -> Result<u64, PlainError>;
}

fn main() {}
