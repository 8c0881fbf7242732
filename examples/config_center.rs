//! A config center: a typed value published with compare-and-set on its version and pushed to
//! every subscriber. Two services follow the limits; an operator raises them, a second
//! operator working from an old version is refused, and a value that does not read as the
//! limits is reported while the services keep the last good one.
//!
//! `cargo run --example config_center` (an embedded registry), or
//! `cargo run --example config_center -- 127.0.0.1:7000` (a running one).

use std::time::Duration;

use rmif_registry::recipes::config::{ConfigCenter, ConfigError, Expect, Subscription};
use rmif_suite::ExampleRegistry;
use serde::{Deserialize, Serialize};

/// The configuration the services share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Limits {
    max_connections: u32,
    requests_per_second: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rmif_suite::init_logging();
    let registry = ExampleRegistry::from_args().await?;
    let config = ConfigCenter::new(registry.client());
    let first = Limits {
        max_connections: 100,
        requests_per_second: 1000,
    };
    let version = match config.publish("limits", &first, Expect::Absent).await {
        Ok(version) => version,
        // Left by an earlier run on a running registry: start from it.
        Err(ConfigError::Registry(rmif_registry::RegistryError::NodeExists { .. })) => {
            config.publish("limits", &first, Expect::Any).await?
        }
        Err(error) => return Err(error.into()),
    };
    println!("operator-1  published {first:?} (version {version})");

    let mut orders = config.subscribe::<Limits>("limits").await?;
    let mut billing = config.subscribe::<Limits>("limits").await?;
    for (service, subscription) in [("orders", &orders), ("billing", &billing)] {
        let current = subscription.current().ok_or("no value")?;
        println!(
            "{service:<11} starts with {:?} (version {})",
            current.value, current.version
        );
    }

    // An operator raises the limits over the version it read.
    let raised = Limits {
        max_connections: 200,
        ..first.clone()
    };
    let version = config
        .publish("limits", &raised, Expect::Version(version))
        .await?;
    println!("operator-1  published {raised:?} (version {version})");
    for (service, subscription) in [("orders", &mut orders), ("billing", &mut billing)] {
        let pushed = next(subscription).await?;
        println!(
            "{service:<11} was pushed {:?} (version {})",
            pushed.value, pushed.version
        );
    }

    // A second operator still works from the first version: refused.
    let stale = Limits {
        max_connections: 50,
        ..first
    };
    match config.publish("limits", &stale, Expect::Version(0)).await {
        Err(ConfigError::Registry(refused)) => println!("operator-2  refused: {refused}"),
        other => return Err(format!("a stale publish went through: {other:?}").into()),
    }

    // A value that does not read as the limits: reported, the last good one kept.
    config
        .publish("limits", &"max_connections=lots", Expect::Any)
        .await?;
    while orders.rejected().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "orders      rejected a value: {}",
        orders.rejected().unwrap_or_default()
    );
    let kept = orders.current().ok_or("no value")?;
    println!(
        "orders      keeps {:?} (version {})",
        kept.value, kept.version
    );
    Ok(())
}

/// The next value pushed to `subscription`, within a few seconds.
async fn next(
    subscription: &mut Subscription<Limits>,
) -> Result<
    std::sync::Arc<rmif_registry::recipes::config::Versioned<Limits>>,
    Box<dyn std::error::Error>,
> {
    tokio::time::timeout(Duration::from_secs(5), subscription.changed())
        .await?
        .ok_or_else(|| "the value was deleted".into())
}
