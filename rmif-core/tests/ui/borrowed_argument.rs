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
pub trait Greeter {
    async fn greet(&self, name: &str) -> Result<String, MyError>;
    // A lifetime inside a type borrows too.
    async fn greet_all(&self, names: Vec<std::borrow::Cow<'static, str>>) -> Result<(), MyError>;
}
fn main() {}
