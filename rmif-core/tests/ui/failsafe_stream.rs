#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct E;

impl From<rmif_core::Error> for E {
    fn from(_: rmif_core::Error) -> Self {
        E
    }
}

#[rmif_core::service]
pub trait Feed {
    #[rmif(failsafe)]
    async fn follow(&self) -> Result<rmif_core::Streaming<u32, E>, E>;
    #[rmif(cluster = "failsafe")]
    async fn latest(&self) -> Result<u32, E>;
}

fn main() {}
