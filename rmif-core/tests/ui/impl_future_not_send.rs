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
pub trait Counter {
    async fn next(&self) -> Result<u64, MyError>;
}

struct Local;

// An `Rc` held across an await makes the future not `Send`; a provider runs it on any thread.
impl Counter for Local {
    async fn next(&self) -> Result<u64, MyError> {
        let count = std::rc::Rc::new(1);
        std::future::ready(()).await;
        Ok(*count)
    }
}

fn main() {}
