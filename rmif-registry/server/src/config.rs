//! Configuration of a registry member, from a properties file (case-insensitive keys) with
//! command-line overrides.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rmif_core::config::{ConfigError, Properties, parse_millis, resolve_addr};

/// Every key a member's configuration file may hold.
pub const REGISTRY_KEYS: &[&str] = &[
    "node_id",
    "peers",
    "client_addr",
    "admin_addr",
    "data_dir",
    "raft_tick_ms",
    "election_ticks",
    "heartbeat_ticks",
    "snapshot_entries",
    "snapshot_log_mb",
    "min_session_timeout_ms",
    "max_session_timeout_ms",
    "initial_cluster_state",
    "log_engine",
    "log_format",
    "probe_providers",
    "Tick_time",
    "Again_time",
    "Monitor_log",
];

/// Where a member keeps its Raft log (`log_engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEngine {
    /// rmif's write-ahead log in `data_dir/wal`: one record and one fdatasync per write.
    Wal,
    /// A redb database, `data_dir/raft.redb`: every write a B-tree transaction.
    Redb,
}

impl LogEngine {
    /// Every engine, by the name `log_engine` takes.
    const ALL: [LogEngine; 2] = [LogEngine::Wal, LogEngine::Redb];

    /// The name `log_engine` takes.
    pub fn name(self) -> &'static str {
        match self {
            LogEngine::Wal => "wal",
            LogEngine::Redb => "redb",
        }
    }
}

/// How a member writes its log lines (`log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL TARGET: message key=value …`, coloured on a terminal only.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields, for log collectors.
    Json,
}

impl LogFormat {
    /// Every format, by the name `log_format` takes.
    const ALL: [LogFormat; 2] = [LogFormat::Text, LogFormat::Json];

    /// The name `log_format` takes.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// Parses a `log_format` value; the error names the values allowed.
    pub fn parse(value: &str) -> Result<LogFormat, String> {
        LogFormat::ALL
            .into_iter()
            .find(|format| format.name().eq_ignore_ascii_case(value.trim()))
            .ok_or_else(|| format!("`{value}` is not a log format: expected text or json"))
    }
}

/// How one registry member runs.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// This member's Raft id (`node_id`).
    pub node_id: u64,
    /// Every member's Raft peer address, by id (`peers = 1=host:port,2=host:port,…`).
    pub peers: BTreeMap<u64, SocketAddr>,
    /// Where clients connect (`client_addr`).
    pub client_addr: SocketAddr,
    /// Where the admin HTTP endpoint listens (`admin_addr`, optional).
    pub admin_addr: Option<SocketAddr>,
    /// Where the Raft log and snapshots live (`data_dir`).
    pub data_dir: PathBuf,
    /// One Raft tick (`raft_tick_ms`, default 25).
    pub tick: Duration,
    /// Ticks before a follower without a leader campaigns (`election_ticks`, default 10;
    /// randomized up to twice that).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats (`heartbeat_ticks`, default 2).
    pub heartbeat_ticks: usize,
    /// Applied entries between snapshots (`snapshot_entries`, default 100,000, as etcd's
    /// `snapshot-count` and ZooKeeper's `snapCount`). Members take theirs at different
    /// phases of the interval, so that they do not all snapshot at once.
    pub snapshot_entries: u64,
    /// Megabytes of entries appended to the log between snapshots (`snapshot_log_mb`, default
    /// 32), whichever of this and `snapshot_entries` comes first: with large values the log
    /// would otherwise grow to gigabytes, and a restart would replay all of it. Each interval's
    /// threshold is drawn between half and all of it, so that members do not agree on it.
    pub snapshot_log_bytes: u64,
    /// Smallest session timeout granted (`min_session_timeout_ms`, default 500).
    pub min_session_timeout: Duration,
    /// Largest session timeout granted (`max_session_timeout_ms`, default 60,000).
    pub max_session_timeout: Duration,
    /// `initial_cluster_state = existing`: this member joins a running cluster, so if its data
    /// directory is empty (new disk, wiped after a failure) it must not vote before it has
    /// heard from a leader: it may have voted in the current term before it lost its state.
    pub join_existing: bool,
    /// The log engine (`log_engine = wal | redb`); unset: whichever the data directory already
    /// holds, the write-ahead log for a new one.
    pub log_engine: Option<LogEngine>,
    /// Whether the leader probes the providers announced in its tree (`probe_providers`,
    /// default true).
    pub probe_providers: bool,
    /// How often the leader probes each provider's announced address, and the most one probe
    /// may take (`Tick_time`, default 3000 ms).
    pub probe_tick: Duration,
    /// Failed probes in a row after which the leader marks a provider unavailable
    /// (`Again_time`, default 3).
    pub probe_again: u32,
    /// Log an alert when a provider becomes unavailable or available again, and keep the last
    /// alerts in `/rmif/alerts` (`Monitor_log`, default false).
    pub monitor_log: bool,
    /// How the member's log lines are written (`log_format = text | json`, default text). The
    /// program reads it; a member started in-process logs wherever its host's subscriber does.
    pub log_format: LogFormat,
}

impl RegistryConfig {
    /// A single-member registry on loopback for development: client port `client_addr`, peer
    /// port chosen by the system.
    pub fn single(client_addr: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        let mut peers = BTreeMap::new();
        peers.insert(1, SocketAddr::from(([127, 0, 0, 1], 0)));
        RegistryConfig {
            node_id: 1,
            peers,
            client_addr,
            admin_addr: None,
            data_dir: data_dir.into(),
            tick: Duration::from_millis(25),
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_entries: 100_000,
            snapshot_log_bytes: 32 * 1024 * 1024,
            min_session_timeout: Duration::from_millis(500),
            max_session_timeout: Duration::from_secs(60),
            join_existing: false,
            log_engine: None,
            probe_providers: true,
            probe_tick: Duration::from_millis(3000),
            probe_again: 3,
            monitor_log: false,
            log_format: LogFormat::Text,
        }
    }

    /// Reads a member's configuration file, then applies `overrides` (key, value) as if they
    /// were in the file.
    pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut properties = Properties::load(path)?;
        for (key, value) in overrides {
            properties.set_override(key, value);
        }
        Self::from_properties(properties)
    }

    /// Builds the configuration from properties; every required key must be present and no
    /// unknown key may be.
    pub fn from_properties(mut p: Properties) -> Result<Self, ConfigError> {
        let origin = p.origin().to_owned();
        let missing = |key: &str| ConfigError {
            origin: origin.clone(),
            line: 0,
            key: key.to_owned(),
            reason: "required, but not set".to_owned(),
        };
        let node_id = p
            .take_with("node_id", |v| match v.parse::<u64>() {
                Ok(id) if id > 0 => Ok(id),
                _ => Err("expected a positive integer".to_owned()),
            })?
            .ok_or_else(|| missing("node_id"))?;
        let peers = p
            .take_with("peers", parse_peers)?
            .ok_or_else(|| missing("peers"))?;
        let client_addr = p
            .take_with("client_addr", resolve_addr)?
            .ok_or_else(|| missing("client_addr"))?;
        let admin_addr = p.take_with("admin_addr", resolve_addr)?;
        let data_dir = p
            .take_with("data_dir", |v| {
                if v.is_empty() {
                    Err("must not be empty".to_owned())
                } else {
                    Ok(PathBuf::from(v))
                }
            })?
            .ok_or_else(|| missing("data_dir"))?;
        let mut config = RegistryConfig {
            node_id,
            peers,
            client_addr,
            admin_addr,
            data_dir,
            ..RegistryConfig::single(client_addr, "")
        };
        if let Some(tick) = p.take_with("raft_tick_ms", |v| match v.parse::<u64>() {
            Ok(ms) if (1..=10_000).contains(&ms) => Ok(Duration::from_millis(ms)),
            _ => Err("expected milliseconds from 1 to 10000".to_owned()),
        })? {
            config.tick = tick;
        }
        if let Some(ticks) = p.take_with("election_ticks", |v| match v.parse::<usize>() {
            Ok(n) if n >= 3 => Ok(n),
            _ => Err("expected at least 3".to_owned()),
        })? {
            config.election_ticks = ticks;
        }
        if let Some(ticks) = p.take_with("heartbeat_ticks", |v| match v.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err("expected at least 1".to_owned()),
        })? {
            config.heartbeat_ticks = ticks;
        }
        if let Some(entries) = p.take_with("snapshot_entries", |v| match v.parse::<u64>() {
            Ok(n) if n >= 10 => Ok(n),
            _ => Err("expected at least 10".to_owned()),
        })? {
            config.snapshot_entries = entries;
        }
        if let Some(megabytes) = p.take_with("snapshot_log_mb", |v| match v.parse::<u64>() {
            Ok(n) if (1..=1024 * 1024).contains(&n) => Ok(n),
            _ => Err("expected megabytes, from 1 to 1048576".to_owned()),
        })? {
            config.snapshot_log_bytes = megabytes * 1024 * 1024;
        }
        if let Some(min) = p.take_millis("min_session_timeout_ms")? {
            config.min_session_timeout = min;
        }
        if let Some(max) = p.take_millis("max_session_timeout_ms")? {
            config.max_session_timeout = max;
        }
        if let Some(existing) = p.take_with("initial_cluster_state", |v| match v {
            "new" => Ok(false),
            "existing" => Ok(true),
            _ => Err("expected new or existing".to_owned()),
        })? {
            config.join_existing = existing;
        }
        if let Some(engine) = p.take_with("log_engine", |v| {
            LogEngine::ALL
                .into_iter()
                .find(|engine| engine.name() == v)
                .ok_or_else(|| "expected wal or redb".to_owned())
        })? {
            config.log_engine = Some(engine);
        }
        if let Some(probe) = p.take_bool("probe_providers")? {
            config.probe_providers = probe;
        }
        if let Some(tick) = p.take_with("Tick_time", |v| {
            parse_millis(v).and_then(|tick| {
                if (Duration::from_millis(10)..=Duration::from_secs(600)).contains(&tick) {
                    Ok(tick)
                } else {
                    Err("must be from 10 ms to 600 s".to_owned())
                }
            })
        })? {
            config.probe_tick = tick;
        }
        if let Some(again) = p.take_with("Again_time", |v| match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err("expected a count from 1 to 1000".to_owned()),
        })? {
            config.probe_again = again;
        }
        if let Some(monitor) = p.take_bool("Monitor_log")? {
            config.monitor_log = monitor;
        }
        if let Some(format) = p.take_with("log_format", LogFormat::parse)? {
            config.log_format = format;
        }
        p.finish(REGISTRY_KEYS)?;
        config.validate(&origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let error = |key: &str, reason: String| ConfigError {
            origin: origin.to_owned(),
            line: 0,
            key: key.to_owned(),
            reason,
        };
        if !self.peers.contains_key(&self.node_id) {
            return Err(error(
                "peers",
                format!("must include this member (node_id {})", self.node_id),
            ));
        }
        if self.heartbeat_ticks >= self.election_ticks {
            return Err(error(
                "heartbeat_ticks",
                format!(
                    "must be below election_ticks ({}), or every heartbeat gap starts an election",
                    self.election_ticks
                ),
            ));
        }
        if self.min_session_timeout > self.max_session_timeout {
            return Err(error(
                "min_session_timeout_ms",
                "must not exceed max_session_timeout_ms".to_owned(),
            ));
        }
        Ok(())
    }

    /// This member's Raft peer address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peers[&self.node_id]
    }
}

/// Parses `1=host:port,2=host:port,…`.
pub fn parse_peers(value: &str) -> Result<BTreeMap<u64, SocketAddr>, String> {
    let mut peers = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("`{item}` is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("`{id}` in `{item}` is not a positive member id"))?;
        let addr = resolve_addr(addr.trim())?;
        if peers.insert(id, addr).is_some() {
            return Err(format!("member {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("no members listed".to_owned());
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RegistryConfig, ConfigError> {
        RegistryConfig::from_properties(
            Properties::parse(text.as_bytes(), "member.properties").unwrap(),
        )
    }

    #[test]
    fn reads_a_member_file_with_case_insensitive_keys() {
        let config = parse(
            "NODE_ID=2\nPeers=1=127.0.0.1:7101, 2=127.0.0.1:7102,3=127.0.0.1:7103\n\
             client_addr=127.0.0.1:7002\ndata_dir=/tmp/r2\nraft_tick_ms=10\n",
        )
        .unwrap();
        assert_eq!(config.node_id, 2);
        assert_eq!(config.peers.len(), 3);
        assert_eq!(config.peer_addr(), "127.0.0.1:7102".parse().unwrap());
        assert_eq!(config.tick, Duration::from_millis(10));
        assert_eq!(config.probe_tick, Duration::from_secs(3), "the default");
        assert!(!config.monitor_log);
        assert!(config.probe_providers);
        assert_eq!(config.log_format, LogFormat::Text, "the default");
        let json = parse(
            "node_id=1\npeers=1=127.0.0.1:7101\nclient_addr=127.0.0.1:7001\ndata_dir=d\n\
             LOG_FORMAT=JSON\n",
        )
        .unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
    }

    #[test]
    fn probing_and_alerts_take_the_keys_applications_know() {
        let config = parse(
            "node_id=1\npeers=1=127.0.0.1:7101\nclient_addr=127.0.0.1:7001\ndata_dir=d\n\
             tick_time=150\nAgain_time=4\nMONITOR_LOG=true\n",
        )
        .unwrap();
        assert_eq!(config.probe_tick, Duration::from_millis(150));
        assert_eq!(config.probe_again, 4);
        assert!(config.monitor_log);
        let err = parse(
            "node_id=1\npeers=1=127.0.0.1:7101\nclient_addr=127.0.0.1:7001\ndata_dir=d\n\
             Again_time=0\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "Again_time");
    }

    #[test]
    fn invalid_members_files_name_the_problem() {
        let base = "node_id=1\nclient_addr=127.0.0.1:7000\ndata_dir=d\n";
        let cases = [
            (
                format!("{base}peers=1=127.0.0.1:7100,1=127.0.0.1:7101\n"),
                "peers",
                "listed twice",
            ),
            (
                format!("{base}peers=x=127.0.0.1:7100\n"),
                "peers",
                "not a positive member id",
            ),
            (
                format!("{base}peers=2=127.0.0.1:7100\n"),
                "peers",
                "must include this member",
            ),
            (
                "peers=1=127.0.0.1:7100\nclient_addr=127.0.0.1:1\ndata_dir=d\n".to_owned(),
                "node_id",
                "required",
            ),
            (
                format!("{base}peers=1=127.0.0.1:7100\nelection_tick=5\n"),
                "election_tick",
                "did you mean `election_ticks`",
            ),
            (
                format!("{base}peers=1=127.0.0.1:7100\nlog_engine=rocksdb\n"),
                "log_engine",
                "expected wal or redb",
            ),
            (
                format!("{base}peers=1=127.0.0.1:7100\nsnapshot_log_mb=0\n"),
                "snapshot_log_mb",
                "expected megabytes, from 1",
            ),
            (
                format!("{base}peers=1=127.0.0.1:7100\nsnapshot_log_mb=lots\n"),
                "snapshot_log_mb",
                "expected megabytes, from 1",
            ),
            (
                format!("{base}peers=1=127.0.0.1:7100\nlog_format=xml\n"),
                "log_format",
                "`xml` is not a log format: expected text or json",
            ),
        ];
        for (text, key, reason) in cases {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.key, key, "{text}");
            assert!(err.to_string().contains(reason), "{err}");
        }
    }
}
