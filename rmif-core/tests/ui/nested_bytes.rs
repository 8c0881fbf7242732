// The warning is made an error so that the case fails to compile and its message is pinned.
#![deny(deprecated)]

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
pub trait Store {
    // Whole values travel as bytes: no warning.
    async fn put(&self, body: Vec<u8>, boxed: Box<[u8]>) -> Result<Vec<u8>, MyError>;
    // Nested ones do not.
    async fn get(&self, key: String) -> Result<Option<Vec<u8>>, MyError>;
    async fn put_many(&self, bodies: Vec<(String, Box<[u8]>)>) -> Result<(), MyError>;
}

fn main() {}
