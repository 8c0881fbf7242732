//! A service in five minutes: a contract, its implementation, and a process that provides it
//! and calls it through the registry. Start a registry (`cargo run -p rmif-registry-server --
//! --dev`), then `cargo run --example quickstart`.

use rmif_registry::App;

/// The contract, in a crate that providers and consumers share.
#[rmif_core::service]
pub trait Calculator {
    /// May be retried on another provider after a connection failure.
    #[rmif(idempotent)]
    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
}

#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum CalcError {
    #[error("division by zero")]
    DivisionByZero,
    /// Transport failures reach callers through the trait.
    #[error(transparent)]
    Rpc(#[from] rmif_core::Error),
}

/// The provider's implementation: a plain `impl` with `async fn`s.
struct Local;

impl Calculator for Local {
    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        a.checked_div(b).ok_or(CalcError::DivisionByZero)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The file says what this process is (Server_type=both: it provides and calls) and where
    // the registry is (Config_center_url).
    let file = std::env::args().nth(1);
    let app = App::from_file(file.as_deref().unwrap_or("examples/quickstart.properties"))?
        .provide(CalculatorProvider::new(Local))
        .start()
        .await?;

    // The generated stub implements `Calculator`: code written against the trait runs the
    // same on a local implementation or a remote one.
    let calculator: CalculatorConsumer = app.stub()?;
    println!("7 / 2 = {}", calculator.div(7, 2).await?);
    println!("1 / 0 = {:?}", calculator.div(1, 0).await);

    // A real service waits for Ctrl-C or SIGTERM with `app.run().await`; either way it
    // leaves the registry, then drains its calls, then stops.
    app.shutdown().await;
    Ok(())
}
