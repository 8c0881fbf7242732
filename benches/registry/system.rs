//! What the harness and each system's module exchange: a member's ports and role, what a
//! watcher saw, what discovery's providers announce, and the member settings a scenario tunes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rmif_registry::discovery::ProviderMetadata;

/// Each member's ports on loopback, member i at index i.
pub struct MemberPorts {
    /// Where clients connect.
    pub clients: Vec<SocketAddr>,
    /// Where the members talk to each other.
    pub peers: Vec<u16>,
    /// ZooKeeper's leader-election ports.
    pub elections: Vec<u16>,
}

/// What a member says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

/// What a watcher saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Updated,
    Deleted,
}

/// The session timeout of the discovery scenario's provider hosts and consumers (etcd: the
/// providers' lease TTL).
pub const DISCOVERY_SESSION: Duration = Duration::from_secs(10);

/// What a provider at `addr` announces: about 240 bytes of JSON, as a real provider's metadata
/// (its methods, formats, version, application, start time, a label).
pub fn provider_metadata(addr: SocketAddr) -> ProviderMetadata {
    ProviderMetadata {
        weight: 100,
        version: "1.0.0".to_owned(),
        group: String::new(),
        application: "bench-provider".to_owned(),
        methods: ["get", "put", "list", "remove"].map(str::to_owned).to_vec(),
        serializations: vec!["msgpack".to_owned(), "json".to_owned()],
        compressions: vec!["lz4".to_owned()],
        rmif_version: "0.1.0".to_owned(),
        start_time_ms: 1_764_000_000_000 + u64::from(addr.port()),
        unavailable: None,
        extra: BTreeMap::from([("zone".to_owned(), "zone-a".into())]),
    }
}

/// Member settings a scenario changes from the systems' defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tuning {
    /// Applied entries between snapshots: rmif `snapshot_entries`, etcd `--snapshot-count`
    /// (`None`: each system's default, 100,000 for both). An rmif `--rmif-set` still wins.
    pub snapshot_entries: Option<u64>,
}
