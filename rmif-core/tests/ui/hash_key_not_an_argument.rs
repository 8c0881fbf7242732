#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct E;

impl From<rmif_core::Error> for E {
    fn from(_: rmif_core::Error) -> Self {
        E
    }
}

#[rmif_core::service]
pub trait Sessions {
    #[rmif(hash_key = "usr")]
    async fn touch(&self, user: String, note: u64) -> Result<(), E>;
}

fn main() {}
