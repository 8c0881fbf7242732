//! Typed configuration of providers and consumers, loaded from a properties file (with the
//! `properties` feature, on by default) or built in code.
//!
//! One file serves both roles (as in the original design this follows): a process reads it once
//! and takes the provider part, the consumer part, or both. Keys are case-insensitive; unknown
//! keys are errors. docs/OPERATIONS.md lists every key.

mod error;
#[cfg(feature = "properties")]
mod load;
#[cfg(feature = "properties")]
mod properties;
mod values;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use error::ConfigError;
#[cfg(feature = "properties")]
#[cfg_attr(docsrs, doc(cfg(feature = "properties")))]
pub use properties::Properties;
pub use values::{parse_millis, resolve_addr};

use crate::balance::BalancePolicy;
use crate::compress::CompressionPolicy;
use crate::protocol::DEFAULT_MAX_FRAME_SIZE;
use crate::serialize::Serialization;

/// Which roles a process plays (`Server_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Serves services (the default).
    #[default]
    Provider,
    /// Calls services.
    Consumer,
    /// Both.
    Both,
}

/// Settings of a provider: where it listens and how it protects itself.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Address to bind (`Provider_bind`, default `0.0.0.0`).
    pub bind: IpAddr,
    /// Port to bind (`Provider_port`, default 9999; 0 picks a free port).
    pub port: u16,
    /// Weight announced to consumers (`Provider_weight`, default 100).
    pub weight: u32,
    /// Heartbeat interval on idle connections (`Tick_time`, default 3000 ms).
    pub tick: Duration,
    /// Missed heartbeat intervals before a connection is closed (`Again_time`, default 3).
    pub again: u32,
    /// Largest frame accepted, and largest body a compressed body may expand to
    /// (`Max_frame_size`, default 16 MiB).
    pub max_frame_size: usize,
    /// Calls and open streams served at once before new calls are answered "overloaded"
    /// (`Max_concurrent_requests`, default 10,000).
    pub max_concurrent_requests: usize,
    /// How long a graceful shutdown waits for in-flight calls (`Shutdown_timeout`, default
    /// 10,000 ms).
    pub shutdown_timeout: Duration,
    /// Compression of response bodies (`Compression`, `Compress_threshold`).
    pub compression: CompressionPolicy,
    /// Only advertise local addresses matching this pattern (`Ip_include_pattern`).
    ///
    /// Part of the `properties` feature, like the file it comes from: only announcements in a
    /// registry use it, and the registry crates build rmif-core with its default features.
    #[cfg(feature = "properties")]
    #[cfg_attr(docsrs, doc(cfg(feature = "properties")))]
    pub ip_include: Option<regex_lite::Regex>,
    /// Never advertise local addresses matching this pattern (`Ip_exclude_pattern`).
    #[cfg(feature = "properties")]
    #[cfg_attr(docsrs, doc(cfg(feature = "properties")))]
    pub ip_exclude: Option<regex_lite::Regex>,
    /// Log one line per call served, with its latency and outcome (`Monitor_log`): the
    /// provider adds [`crate::layer::MonitorLog`] outside its other layers.
    pub monitor_log: bool,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 9999,
            weight: 100,
            tick: Duration::from_millis(3000),
            again: 3,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_concurrent_requests: 10_000,
            shutdown_timeout: Duration::from_secs(10),
            compression: CompressionPolicy::default(),
            #[cfg(feature = "properties")]
            ip_include: None,
            #[cfg(feature = "properties")]
            ip_exclude: None,
            monitor_log: false,
        }
    }
}

impl ProviderConfig {
    /// A provider on 127.0.0.1 with a free port: what tests and local demos want.
    pub fn loopback() -> Self {
        ProviderConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            ..ProviderConfig::default()
        }
    }

    /// A provider listening on `addr` (port 0: a free port), with default settings otherwise.
    ///
    /// ```
    /// let config = rmif_core::ProviderConfig::at("127.0.0.1:0".parse().unwrap());
    /// assert_eq!(config.bind_addr().to_string(), "127.0.0.1:0");
    /// ```
    pub fn at(addr: SocketAddr) -> Self {
        ProviderConfig {
            bind: addr.ip(),
            port: addr.port(),
            ..ProviderConfig::default()
        }
    }

    /// The socket address to bind.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

/// Settings of a consumer: how it calls and whom.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Default deadline of a call (`Provider_session_timeout`, default 9000 ms); a method's
    /// `#[rmif(timeout_ms = …)]` overrides it.
    pub timeout: Duration,
    /// Heartbeat interval on idle connections (`Tick_time`, default 3000 ms).
    pub tick: Duration,
    /// Missed heartbeat intervals before a connection is closed (`Again_time`, default 3).
    pub again: u32,
    /// How a provider is picked for each call (`Consumer_policy`, default random).
    pub policy: BalancePolicy,
    /// Body format of requests (`Serialization`, default msgpack).
    pub serialization: Serialization,
    /// Compression of request bodies (`Compression`, `Compress_threshold`).
    pub compression: CompressionPolicy,
    /// Largest frame accepted (`Max_frame_size`, default 16 MiB).
    pub max_frame_size: usize,
    /// Further attempts on other providers after a retryable failure (`Retries`, default 2).
    pub retries: u32,
    /// When a provider that keeps failing calls is left out of balancing (`Outlier_*`).
    pub outlier: crate::OutlierPolicy,
    /// How calls treat failing providers (`Cluster`, default failover).
    pub cluster: crate::ClusterPolicy,
    /// The cluster policy of single methods, by method name (`Cluster.<method>`).
    pub method_cluster: std::collections::BTreeMap<String, crate::ClusterPolicy>,
    /// Providers a forking call is sent to at once (`Forks`, default 2).
    pub forks: u32,
    /// Log one line per call (`Monitor_log`, default false): see
    /// [`crate::layer::MonitorLog`].
    pub monitor_log: bool,
    /// Retries as a share of calls, in per cent, beyond a reserve of ten
    /// (`Retry_budget_percent`, default 20).
    pub retry_budget_percent: u32,
    /// Deadline of one connection attempt (`Connect_timeout`, default 3000 ms).
    pub connect_timeout: Duration,
    /// Providers to call when no registry is configured (`Provider_addresses`).
    pub static_providers: Vec<SocketAddr>,
    /// Where the provider lists the registry confirmed are kept, to be called when the
    /// registry cannot be reached at start (`Discovery_cache_file`; `None`: a file in the
    /// temporary directory named after the application and registry; an empty path, from
    /// `Discovery_cache_file=none`: no cache).
    pub cache_file: Option<std::path::PathBuf>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            timeout: Duration::from_millis(9000),
            tick: Duration::from_millis(3000),
            again: 3,
            policy: BalancePolicy::default(),
            serialization: Serialization::default(),
            compression: CompressionPolicy::default(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            retries: 2,
            outlier: crate::OutlierPolicy::default(),
            cluster: crate::ClusterPolicy::default(),
            method_cluster: std::collections::BTreeMap::new(),
            forks: 2,
            monitor_log: false,
            retry_budget_percent: 20,
            connect_timeout: Duration::from_millis(3000),
            static_providers: Vec::new(),
            cache_file: None,
        }
    }
}

/// A whole rmif configuration file.
#[derive(Debug, Clone, Default)]
pub struct RpcConfig {
    /// `Server_type`.
    pub role: Role,
    /// Registry members to use for discovery (`Config_center_url`, comma-separated host:port).
    /// Empty means static providers.
    pub registry: Vec<String>,
    /// The provider part.
    pub provider: ProviderConfig,
    /// The consumer part.
    pub consumer: ConsumerConfig,
    /// The application's name, in what providers and consumers announce (`Application`).
    pub application: String,
    /// Further labels providers and consumers announce (`Metadata.<name>=<value>` lines).
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// Every key [`RpcConfig`] understands, as documented.
pub const RPC_KEYS: &[&str] = &[
    "Server_type",
    "Config_center_url",
    "Provider_bind",
    "Provider_port",
    "Provider_weight",
    "Provider_session_timeout",
    "Provider_addresses",
    "Tick_time",
    "Again_time",
    "Ip_include_pattern",
    "Ip_exclude_pattern",
    "Consumer_policy",
    "Monitor_log",
    "Serialization",
    "Compression",
    "Compress_threshold",
    "Max_frame_size",
    "Max_concurrent_requests",
    "Shutdown_timeout",
    "Retries",
    "Retry_budget_percent",
    "Cluster",
    "Cluster.<method>",
    "Forks",
    "Outlier_consecutive_failures",
    "Outlier_ejection_ms",
    "Outlier_max_ejection_ms",
    "Outlier_max_ejected_percent",
    "Connect_timeout",
    "Application",
    "Discovery_cache_file",
    "Metadata.<name>",
];
