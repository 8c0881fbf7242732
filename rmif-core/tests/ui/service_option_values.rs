#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum MyError {
    Rpc(rmif_core::Error),
}

impl From<rmif_core::Error> for MyError {
    fn from(error: rmif_core::Error) -> Self {
        MyError::Rpc(error)
    }
}

#[rmif_core::service(name = 5)]
pub trait NumberName {}

#[rmif_core::service(name = some::path)]
pub trait PathName {}

#[rmif_core::service(name)]
pub trait NoName {}

#[rmif_core::service(name = "")]
pub trait EmptyName {}

#[rmif_core::service(crate = "not a path")]
pub trait BadCrate {}

#[rmif_core::service(version "2")]
pub trait NotAnOption {}

fn main() {}
