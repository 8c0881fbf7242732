//! `#[service(crate = "…")]` makes the generated code work when rmif-core is depended on under
//! another name (this package's dev-dependency calls it `renamed_core`, and nothing here is
//! called `rmif_core`).

use renamed_core::{Client, ConsumerConfig, ProviderConfig, Server};

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum GreetError {
    #[error(transparent)]
    Rpc(#[from] renamed_core::Error),
}

#[renamed_core::service(crate = "renamed_core", name = "greeter", version = "2")]
pub trait Greeter {
    async fn greet(&self, name: String) -> Result<String, GreetError>;
}

struct English;

impl Greeter for English {
    async fn greet(&self, name: String) -> Result<String, GreetError> {
        Ok(format!("hello, {name}"))
    }
}

#[tokio::test]
async fn generated_code_follows_the_crate_option() {
    assert_eq!(GreeterProvider::DESCRIPTOR.key().to_string(), "greeter:2");
    let server = Server::builder(ProviderConfig::loopback())
        .add_service(GreeterProvider::new(English))
        .serve()
        .await
        .unwrap();
    let config = ConsumerConfig {
        static_providers: vec![server.local_addr()],
        ..ConsumerConfig::default()
    };
    let greeter = GreeterConsumer::new(&Client::with_static_providers(config));
    assert_eq!(greeter.greet("rust".into()).await.unwrap(), "hello, rust");
    server.shutdown().await;
}

#[renamed_core::service(crate = "renamed_core")]
pub trait Defaulted {
    async fn ping(&self) -> Result<(), GreetError>;
}

#[test]
fn the_default_name_is_the_module_path_and_trait_name() {
    assert_eq!(
        DefaultedProvider::DESCRIPTOR.name,
        "renamed_crate::Defaulted"
    );
    assert_eq!(
        DefaultedProvider::DESCRIPTOR.methods[0].id,
        renamed_core::protocol::ids::method_id("ping")
    );
}
