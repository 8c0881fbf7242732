//! Reading an [`RpcConfig`] from properties: each key into its typed field, every error naming
//! the file, the line and the key.

use std::fmt::Display;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::{
    ConfigError, ConsumerConfig, Properties, ProviderConfig, RPC_KEYS, Role, RpcConfig,
    parse_millis, resolve_addr,
};
use crate::ClusterPolicy;
use crate::balance::BalancePolicy;
use crate::compress::{self, Compression};
use crate::features::{LeftOut, list};
use crate::serialize::{self, Serialization};

#[cfg_attr(docsrs, doc(cfg(feature = "properties")))]
impl RpcConfig {
    /// Reads a properties file. Every error names the file, the line and the key.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_properties(Properties::load(path)?)
    }

    /// Parses properties text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::from_properties(Properties::parse(text.as_bytes(), origin)?)
    }

    /// Builds the configuration from properties, rejecting unknown keys.
    pub fn from_properties(mut p: Properties) -> Result<Self, ConfigError> {
        let config = Self::take_from(&mut p)?;
        p.finish(RPC_KEYS)?;
        Ok(config)
    }

    /// Takes the keys this type understands out of `p`, leaving others for a caller that
    /// shares the file (the registry server, for example).
    pub fn take_from(p: &mut Properties) -> Result<Self, ConfigError> {
        let mut provider = ProviderConfig::default();
        let mut consumer = ConsumerConfig::default();

        let role = p
            .take_with("Server_type", |v| match v.to_ascii_lowercase().as_str() {
                "provider" => Ok(Role::Provider),
                "consumer" => Ok(Role::Consumer),
                "both" => Ok(Role::Both),
                _ => Err("expected provider, consumer or both".to_owned()),
            })?
            .unwrap_or_default();
        let registry = p
            .take_with("Config_center_url", |v| {
                split_list(v)
                    .map(|a| {
                        if a.rsplit_once(':')
                            .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok())
                        {
                            Ok(a.to_owned())
                        } else {
                            Err(format!("`{a}` is not host:port"))
                        }
                    })
                    .collect()
            })?
            .unwrap_or_default();
        if let Some(bind) = p.take_with("Provider_bind", |v| {
            v.parse::<IpAddr>()
                .map_err(|_| "expected an IP address such as 0.0.0.0 or 127.0.0.1".to_owned())
        })? {
            provider.bind = bind;
        }
        if let Some(port) = p.take_with("Provider_port", |v| {
            v.parse::<u16>()
                .map_err(|_| "expected a port number from 0 to 65535".to_owned())
        })? {
            provider.port = port;
        }
        if let Some(weight) = p.take_with("Provider_weight", |v| {
            number_in(v, 1..=1_000_000u32, "a weight")
        })? {
            provider.weight = weight;
        }
        if let Some(timeout) = p.take_with("Provider_session_timeout", positive_millis)? {
            consumer.timeout = timeout;
        }
        if let Some(list) = p.take_with("Provider_addresses", |v| {
            split_list(v)
                .map(resolve_addr)
                .collect::<Result<Vec<_>, _>>()
        })? {
            consumer.static_providers = list;
        }
        if let Some(tick) = p.take_with("Tick_time", positive_millis)? {
            provider.tick = tick;
            consumer.tick = tick;
        }
        if let Some(again) = p.take_with("Again_time", |v| number_in(v, 1..=1000u32, "a count"))? {
            provider.again = again;
            consumer.again = again;
        }
        provider.ip_include = p.take_with("Ip_include_pattern", compile_pattern)?;
        provider.ip_exclude = p.take_with("Ip_exclude_pattern", compile_pattern)?;
        if let Some(policy) = p.take_with("Consumer_policy", |v| {
            BalancePolicy::from_name(v)
                .ok_or_else(|| format!("expected one of {}", BalancePolicy::NAMES.join(", ")))
        })? {
            consumer.policy = policy;
        }
        provider.monitor_log = p.take_bool("Monitor_log")?.unwrap_or(false);
        consumer.monitor_log = provider.monitor_log;
        if let Some(format) = p.take_with("Serialization", |v| {
            Serialization::from_name(v).ok_or_else(|| {
                let known = Serialization::ALL.map(Serialization::name);
                choice_error(v, &known, serialize::LEFT_OUT)
            })
        })? {
            consumer.serialization = format;
        }
        if let Some(algorithm) = p.take_with("Compression", |v| {
            Compression::from_name(v).ok_or_else(|| {
                let known = Compression::ALL.map(Compression::name);
                choice_error(v, &known, compress::LEFT_OUT)
            })
        })? {
            provider.compression.algorithm = algorithm;
            consumer.compression.algorithm = algorithm;
        }
        if let Some(threshold) = p.take_u64("Compress_threshold")? {
            provider.compression.threshold = threshold as usize;
            consumer.compression.threshold = threshold as usize;
        }
        if let Some(max) = p.take_with("Max_frame_size", |v| {
            number_in(v, 1024..=u32::MAX as usize, "a size in bytes")
        })? {
            provider.max_frame_size = max;
            consumer.max_frame_size = max;
        }
        if let Some(max) = p.take_with("Max_concurrent_requests", |v| match v.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err("expected a positive integer".to_owned()),
        })? {
            provider.max_concurrent_requests = max;
        }
        if let Some(timeout) = p.take_millis("Shutdown_timeout")? {
            provider.shutdown_timeout = timeout;
        }
        if let Some(retries) = p.take_with("Retries", |v| number_in(v, 0..=10u32, "a count"))? {
            consumer.retries = retries;
        }
        if let Some(percent) = p.take_with("Retry_budget_percent", |v| {
            number_in(v, 0..=100u32, "a percentage")
        })? {
            consumer.retry_budget_percent = percent;
        }
        let cluster_policy = |v: &str| {
            ClusterPolicy::from_name(v).ok_or_else(|| {
                let choices = format!("expected {}", list(&ClusterPolicy::NAMES, "or"));
                if v.eq_ignore_ascii_case("failsafe") {
                    // It needs a default value of the method's type, known only in the trait.
                    format!("{choices}; failsafe is set in the trait, #[rmif(failsafe)]")
                } else {
                    choices
                }
            })
        };
        if let Some(cluster) = p.take_with("Cluster", cluster_policy)? {
            consumer.cluster = cluster;
        }
        for (method, _) in p.take_prefixed("Cluster.") {
            // Taken again by its full key, so that a bad value's error names its line.
            if let Some(policy) = p.take_with(&format!("Cluster.{method}"), cluster_policy)? {
                consumer.method_cluster.insert(method, policy);
            }
        }
        if let Some(forks) = p.take_with("Forks", |v| number_in(v, 2..=8u32, "a count"))? {
            consumer.forks = forks;
        }
        if let Some(failures) = p.take_with("Outlier_consecutive_failures", |v| {
            number_in(v, 0..=1000u32, "a count")
        })? {
            consumer.outlier.consecutive_failures = failures;
        }
        if let Some(time) = p.take_with("Outlier_ejection_ms", positive_millis)? {
            consumer.outlier.base_ejection = time;
        }
        if let Some(time) = p.take_with("Outlier_max_ejection_ms", positive_millis)? {
            consumer.outlier.max_ejection = time;
        }
        if let Some(percent) = p.take_with("Outlier_max_ejected_percent", |v| {
            number_in(v, 0..=100u32, "a percentage")
        })? {
            consumer.outlier.max_ejected_percent = percent;
        }
        if let Some(timeout) = p.take_with("Connect_timeout", positive_millis)? {
            consumer.connect_timeout = timeout;
        }
        let application = p
            .take_with("Application", |v| {
                if v.chars().all(|c| c.is_ascii_graphic()) {
                    Ok(v.to_owned())
                } else {
                    Err("expected a name without spaces or control characters".to_owned())
                }
            })?
            .unwrap_or_default();
        consumer.cache_file = p.take_with("Discovery_cache_file", |v| {
            Ok(if v.eq_ignore_ascii_case("none") {
                std::path::PathBuf::new()
            } else {
                std::path::PathBuf::from(v)
            })
        })?;
        let metadata = p.take_prefixed("Metadata.").into_iter().collect();
        Ok(RpcConfig {
            role,
            registry,
            provider,
            consumer,
            application,
            metadata,
        })
    }
}

/// Why `value` is none of the `known` choices: one this build leaves out names the feature that
/// adds it, since "expected msgpack" alone would leave a reader of `Serialization=json` puzzled.
fn choice_error(value: &str, known: &[&str], left_out: &[LeftOut]) -> String {
    match LeftOut::by_name(left_out, value) {
        Some(missing) => format!(
            "this build of rmif-core was made without {0}: enable its `{0}` feature, or choose {1}",
            missing.name,
            list(known, "or")
        ),
        None => format!("expected {}", list(known, "or")),
    }
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `value` as a whole number within `range`; the error names `what` and the bounds.
fn number_in<T>(value: &str, range: RangeInclusive<T>, what: &str) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    match value.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "expected {what} from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

fn positive_millis(value: &str) -> Result<Duration, String> {
    match parse_millis(value)? {
        d if d.is_zero() => Err("must be greater than zero".to_owned()),
        d => Ok(d),
    }
}

fn compile_pattern(value: &str) -> Result<regex_lite::Regex, String> {
    regex_lite::Regex::new(value).map_err(|e| format!("not a valid regular expression: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_documented_values() {
        let config = RpcConfig::parse("", "empty").unwrap();
        assert_eq!(config.role, Role::Provider);
        assert_eq!(config.provider.port, 9999);
        assert_eq!(config.consumer.timeout, Duration::from_millis(9000));
        assert_eq!(config.consumer.tick, Duration::from_millis(3000));
        assert_eq!(config.consumer.again, 3);
        assert!(config.registry.is_empty());
    }

    #[test]
    fn a_full_file_is_read_into_both_roles() {
        let text = "\
Server_type=both
Config_center_url=127.0.0.1:7000, 127.0.0.1:7001
Provider_bind=127.0.0.1
Provider_port=0
Provider_session_timeout=1500
Provider_addresses=127.0.0.1:9001,127.0.0.1:9002
Tick_time=200
Again_time=5
Ip_include_pattern=172\\.17\\.138\\..*|192\\.168\\.0\\..*
Consumer_policy=rotate
Monitor_log=true
Serialization=msgpack
Compression=none
Compress_threshold=1024
Retries=0
Outlier_consecutive_failures=7
Outlier_ejection_ms=2000
Outlier_max_ejection_ms=20000
Outlier_max_ejected_percent=30
Cluster=failfast
Cluster.get_user=forking
Forks=3
Retry_budget_percent=10
";
        let c = RpcConfig::parse(text, "full.properties").unwrap();
        assert_eq!(c.role, Role::Both);
        assert_eq!(c.registry, vec!["127.0.0.1:7000", "127.0.0.1:7001"]);
        assert_eq!(c.provider.bind_addr(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.consumer.timeout, Duration::from_millis(1500));
        assert_eq!(c.consumer.static_providers.len(), 2);
        assert_eq!(c.provider.tick, Duration::from_millis(200));
        assert_eq!(c.consumer.again, 5);
        assert!(c.provider.ip_include.unwrap().is_match("192.168.0.7"));
        assert_eq!(c.consumer.policy, BalancePolicy::RoundRobin);
        assert!(c.provider.monitor_log);
        assert!(c.consumer.monitor_log);
        assert_eq!(c.consumer.serialization, Serialization::MsgPack);
        assert_eq!(c.consumer.compression.algorithm, Compression::None);
        assert_eq!(c.provider.compression.threshold, 1024);
        assert_eq!(c.consumer.retries, 0);
        assert_eq!(
            c.consumer.outlier,
            crate::OutlierPolicy {
                consecutive_failures: 7,
                base_ejection: Duration::from_millis(2000),
                max_ejection: Duration::from_millis(20000),
                max_ejected_percent: 30,
            }
        );
        assert_eq!(c.consumer.cluster, crate::ClusterPolicy::Failfast);
        assert_eq!(
            c.consumer.method_cluster.get("get_user"),
            Some(&crate::ClusterPolicy::Forking)
        );
        assert_eq!(c.consumer.forks, 3);
        assert_eq!(c.consumer.retry_budget_percent, 10);
    }

    #[test]
    fn a_method_cluster_policy_that_does_not_exist_names_its_line_and_the_choices() {
        let error = RpcConfig::parse("Retries=1\nCluster.get_user=failsafe\n", "f").unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("f:2: key `Cluster.get_user`"), "{text}");
        assert!(text.contains("#[rmif(failsafe)]"), "{text}");
        assert!(text.contains("failover, failfast or forking"), "{text}");
    }

    #[test]
    fn a_number_out_of_its_bounds_names_them() {
        for (line, expected) in [
            ("Retries=11", "expected a count from 0 to 10"),
            (
                "Outlier_max_ejected_percent=101",
                "expected a percentage from 0 to 100",
            ),
            ("Again_time=0", "expected a count from 1 to 1000"),
            (
                "Provider_weight=many",
                "expected a weight from 1 to 1000000",
            ),
            (
                "Max_frame_size=1023",
                "expected a size in bytes from 1024 to 4294967295",
            ),
        ] {
            let error = RpcConfig::parse(line, "f").unwrap_err().to_string();
            assert!(error.contains(expected), "{line}: {error}");
        }
        assert_eq!(
            RpcConfig::parse("Retries=10", "f")
                .unwrap()
                .consumer
                .retries,
            10
        );
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_is_chosen_by_name() {
        let c = RpcConfig::parse("Serialization=JSON", "f").unwrap();
        assert_eq!(c.consumer.serialization, Serialization::Json);
    }

    #[cfg(feature = "lz4")]
    #[test]
    fn lz4_is_chosen_by_name_for_both_roles() {
        let c = RpcConfig::parse("Compression=lz4", "f").unwrap();
        assert_eq!(c.provider.compression.algorithm, Compression::Lz4);
        assert_eq!(c.consumer.compression.algorithm, Compression::Lz4);
    }

    #[cfg(not(feature = "json"))]
    #[test]
    fn without_json_choosing_it_is_an_error_naming_the_feature() {
        let err = RpcConfig::parse("Serialization=json", "f").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f:1: key `Serialization`: this build of rmif-core was made without json: enable its \
             `json` feature, or choose msgpack (value \"json\")"
        );
    }

    #[cfg(not(feature = "lz4"))]
    #[test]
    fn without_lz4_choosing_it_is_an_error_naming_the_feature() {
        let err = RpcConfig::parse("Compression=LZ4", "f").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f:1: key `Compression`: this build of rmif-core was made without lz4: enable its \
             `lz4` feature, or choose none (value \"LZ4\")"
        );
    }

    #[test]
    fn each_invalid_line_is_reported_with_its_position() {
        let cases = [
            (
                "Provider_port=99999",
                "Provider_port",
                "expected a port number",
            ),
            (
                "Consumer_policy=fastest",
                "Consumer_policy",
                "expected one of random",
            ),
            (
                "Serialization=xml",
                "Serialization",
                // "or json" too, in a build with the json feature.
                "expected msgpack",
            ),
            ("Tick_time=0", "Tick_time", "must be greater than zero"),
            (
                "Ip_exclude_pattern=(",
                "Ip_exclude_pattern",
                "not a valid regular expression",
            ),
            (
                "Provider_addresses=nowhere",
                "Provider_addresses",
                "not a reachable host:port",
            ),
            (
                "Config_center_url=host",
                "Config_center_url",
                "is not host:port",
            ),
        ];
        for (line, key, reason) in cases {
            let text = format!("# first line\n{line}\n");
            let err = RpcConfig::parse(&text, "bad.properties").unwrap_err();
            assert_eq!(
                (err.origin.as_str(), err.line),
                ("bad.properties", 2),
                "{line}"
            );
            assert_eq!(err.key, key, "{line}");
            assert!(err.reason.contains(reason), "{line}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = RpcConfig::parse("Tick_tme=5", "f").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f:1: key `Tick_tme`: unknown key; did you mean `Tick_time`?"
        );
    }

    #[test]
    fn application_labels_and_the_cache_file_are_read() {
        let c = RpcConfig::parse(
            "Application=orders\nMetadata.zone=eu-1\nmetadata.Build=42\nDiscovery_cache_file=/tmp/x.cache\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.application, "orders");
        assert_eq!(c.metadata.get("zone").map(String::as_str), Some("eu-1"));
        assert_eq!(c.metadata.get("Build").map(String::as_str), Some("42"));
        assert_eq!(c.consumer.cache_file, Some("/tmp/x.cache".into()));
        let off = RpcConfig::parse("Discovery_cache_file=none\n", "t").unwrap();
        assert_eq!(off.consumer.cache_file, Some(std::path::PathBuf::new()));
        assert!(RpcConfig::parse("Application=two words\n", "t").is_err());
        assert!(
            RpcConfig::parse("Metadata.=x\n", "t").is_err(),
            "a label needs a name"
        );
    }
}
