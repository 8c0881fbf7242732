//! What probing providers costs the registry's leader: a one-member registry process (the
//! `rmif-registry` program) with 1,000 provider nodes, each at the address of a real rmif
//! provider served by this process, measured once with `probe_providers=false` and once
//! probing every address every second (`Tick_time=1000`). The member's user and system CPU time
//! comes from /proc over 20 s after a 5 s warm-up.
//!
//! ```text
//! cargo bench -p rmif-bench --bench probes [-- --providers N]
//! ```
//!
//! Without `--bench` (as `cargo test --benches` runs it) it only smoke-tests: 20 providers,
//! one second each way.

use std::time::Duration;

use clap::Parser;
use rmif_core::{ProviderConfig, Server, ServerHandle, ServiceKey};
use rmif_registry::discovery::{ProviderMetadata, providers_path};
use rmif_registry::{Consistency, CreateMode, RegistryError, path};
use rmif_testkit::cluster::{Cluster, Settings};

#[rmif_core::service(name = "probes.Ping")]
pub trait Ping {
    async fn ping(&self) -> Result<u32, rmif_core::Error>;
}

struct Pong;

impl Ping for Pong {
    async fn ping(&self) -> Result<u32, rmif_core::Error> {
        Ok(0)
    }
}

#[derive(Debug, Parser)]
struct Cli {
    /// Measure (cargo bench passes it); without it, a short smoke test.
    #[arg(long)]
    bench: bool,
    /// Providers announced.
    #[arg(long, default_value_t = 1_000)]
    providers: usize,
}

fn main() {
    let cli = Cli::parse();
    let (providers, warm_up, measured) = if cli.bench {
        (
            cli.providers,
            Duration::from_secs(5),
            Duration::from_secs(20),
        )
    } else {
        (20, Duration::from_secs(1), Duration::from_secs(1))
    };
    rmif_bench::runtime().block_on(async {
        let mut servers = Vec::with_capacity(providers);
        for _ in 0..providers {
            servers.push(
                Server::builder(ProviderConfig::loopback())
                    .add_service(PingProvider::new(Pong))
                    .serve()
                    .await
                    .expect("provider"),
            );
        }
        let off = member_cpu_share(&servers, "probe_providers=false\n", warm_up, measured).await;
        let on = member_cpu_share(&servers, "Tick_time=1000\nAgain_time=3\n", warm_up, measured).await;
        println!(
            "registry member CPU, {providers} providers, over {measured:?}: probes off {:.2}% of a core, \
             probes every 1000 ms {:.2}% of a core (probing: {:.2} points)",
            off * 100.0,
            on * 100.0,
            (on - off) * 100.0
        );
    });
}

/// The share of one CPU the member used over `measured`, with `providers` announced (by one
/// session: 1,000 sessions would measure their heartbeats, not the probes) and its
/// configuration's `extra` lines.
async fn member_cpu_share(
    providers: &[ServerHandle],
    extra: &str,
    warm_up: Duration,
    measured: Duration,
) -> f64 {
    let settings = Settings {
        extra: extra.to_owned(),
        ..Settings::default()
    };
    let cluster = Cluster::start(1, settings).await;
    let client = cluster.client();
    let key = ServiceKey::new("probes.Ping");
    let parent = providers_path(&key);
    let mut at = String::new();
    for name in parent.split('/').filter(|n| !n.is_empty()) {
        at = path::join(if at.is_empty() { "/" } else { &at }, name);
        match client.create(&at, b"", CreateMode::PERSISTENT).await {
            Ok(_) | Err(RegistryError::NodeExists { .. }) => {}
            Err(error) => panic!("create {at}: {error}"),
        }
    }
    let session = client
        .open_session(Duration::from_secs(30))
        .await
        .expect("a session");
    let ephemeral = CreateMode {
        ephemeral: true,
        sequential: false,
    };
    for provider in providers {
        let node = path::join(&parent, &provider.local_addr().to_string());
        session
            .create(&node, &ProviderMetadata::default().to_json(), ephemeral)
            .await
            .expect("announce");
    }
    tokio::time::sleep(warm_up).await;
    let pid = cluster.members[0].pid().expect("the member runs");
    let before = rmif_bench::cpu::cpu_ms(pid).expect("the member's CPU time");
    tokio::time::sleep(measured).await;
    let used = rmif_bench::cpu::cpu_ms(pid).expect("the member's CPU time") - before;
    // The probes found every provider healthy: none was marked.
    for provider in providers.iter().step_by(10) {
        let node = path::join(&parent, &provider.local_addr().to_string());
        let data = client
            .get(&node, Consistency::Linearizable)
            .await
            .expect("the provider node")
            .data;
        let metadata = ProviderMetadata::parse(&data).expect("provider metadata");
        assert!(
            metadata.unavailable.is_none(),
            "a healthy provider was marked"
        );
    }
    used / 1000.0 / measured.as_secs_f64()
}
