//! What probing costs the leader: a one-member registry process probing 1,000 providers (served
//! by this process) every second, against the same registry with probes off. A measurement,
//! not a check; docs/BENCHMARKS.md has its figures.

use std::time::Duration;

use rmif_registry::{CreateMode, RegistryError};
use rmif_testkit::cluster::{Cluster, Settings};

use super::*;

const PROVIDERS: usize = 1_000;
const WARM_UP: Duration = Duration::from_secs(5);
const MEASURED: Duration = Duration::from_secs(20);

/// User plus system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces): state is the first, utime the
    // 12th and stime the 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Duration::from_secs_f64(ticks as f64 / per_second)
}

/// The share of one CPU the member used over `MEASURED`, with `PROVIDERS` providers announced
/// and its configuration's `extra` lines.
async fn member_cpu_share(providers: &[ServerHandle], extra: &str) -> f64 {
    let settings = Settings {
        extra: extra.to_owned(),
        ..Settings::default()
    };
    let cluster = Cluster::start(1, settings).await;
    let client = cluster.client();
    // One session holds every provider node, as the registry bench's provider host does:
    // 1,000 sessions would measure their heartbeats, not the probes.
    let parent = providers_path(&ping_key());
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
        session
            .create(
                &node_of(provider.local_addr()),
                &ProviderMetadata::default().to_json(),
                ephemeral,
            )
            .await
            .expect("announce");
    }
    tokio::time::sleep(WARM_UP).await;
    let pid = cluster.members[0].pid().expect("the member runs");
    let before = cpu_time(pid);
    tokio::time::sleep(MEASURED).await;
    let used = cpu_time(pid) - before;
    for provider in providers.iter().step_by(100) {
        assert_eq!(
            mark(&client, provider.local_addr()).await,
            Some(None),
            "a healthy provider was marked"
        );
    }
    used.as_secs_f64() / MEASURED.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of ~1 minute: cargo test --release -p rmif-registry-server --test probes cost -- --ignored --nocapture"]
async fn probing_a_thousand_providers_every_second() {
    let mut providers = Vec::with_capacity(PROVIDERS);
    for _ in 0..PROVIDERS {
        providers.push(healthy_provider().await);
    }
    let off = member_cpu_share(&providers, "probe_providers=false\n").await;
    let on = member_cpu_share(&providers, "Tick_time=1000\nAgain_time=3\n").await;
    println!(
        "registry member CPU, {PROVIDERS} providers, over {MEASURED:?}: probes off {:.2}% of a core, \
         probes every 1000 ms {:.2}% of a core (probing: {:.2} points)",
        off * 100.0,
        on * 100.0,
        (on - off) * 100.0
    );
}
