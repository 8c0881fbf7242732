//! A service method with a default body: implementations may leave it out, the provider then
//! runs the default, and the consumer calls the provider like for any other method.

// The generated code names `::rmif_core`; here rmif-core is depended on as `renamed_core` (see
// renamed_crate.rs), so it is brought in under its usual name too.
extern crate renamed_core as rmif_core;

use std::sync::{Arc, Mutex};

use rmif_core::protocol::ids::method_id;
use rmif_core::{
    Client, ConsumerConfig, Dispatch, IncomingRequest, ProviderConfig, Server, ServiceDescriptor,
    ServiceProvider,
};

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum GreetError {
    #[error(transparent)]
    Rpc(#[from] rmif_core::Error),
}

#[rmif_core::service(name = "test.Greeter")]
pub trait Greeter {
    async fn name(&self) -> Result<String, GreetError>;

    /// Built from `name` unless an implementation says otherwise.
    async fn greet(&self, greeting: String) -> Result<String, GreetError> {
        let name = self.name().await?;
        Ok(format!("{greeting}, {name}"))
    }
}

struct Rust;

impl Greeter for Rust {
    async fn name(&self) -> Result<String, GreetError> {
        Ok("rust".into())
    }
}

/// Serves the generated provider, recording the id of each method called.
struct Recording {
    inner: GreeterProvider,
    called: Arc<Mutex<Vec<u32>>>,
}

impl ServiceProvider for Recording {
    fn descriptor(&self) -> &'static ServiceDescriptor {
        self.inner.descriptor()
    }

    fn dispatch(&self, method_id: u32, request: IncomingRequest) -> Dispatch {
        self.called.lock().unwrap().push(method_id);
        self.inner.dispatch(method_id, request)
    }
}

#[tokio::test]
async fn a_default_body_runs_on_the_provider() {
    assert_eq!(Rust.greet("hi".into()).await.unwrap(), "hi, rust");

    let called = Arc::new(Mutex::new(Vec::new()));
    let server = Server::builder(ProviderConfig::loopback())
        .add_service(Recording {
            inner: GreeterProvider::new(Rust),
            called: called.clone(),
        })
        .serve()
        .await
        .unwrap();
    let config = ConsumerConfig {
        static_providers: vec![server.local_addr()],
        ..ConsumerConfig::default()
    };
    let stub: GreeterConsumer = Client::with_static_providers(config).stub();
    assert_eq!(stub.greet("hello".into()).await.unwrap(), "hello, rust");
    // One call, to `greet`: the stub did not run the default itself (which would call `name`).
    assert_eq!(*called.lock().unwrap(), [method_id("greet")]);

    let behind_one_type = DynGreeter::new(stub);
    assert_eq!(
        behind_one_type.greet("hey".into()).await.unwrap(),
        "hey, rust"
    );
    server.shutdown().await;
}
