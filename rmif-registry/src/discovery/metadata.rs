//! What providers and consumers say about themselves in the registry: the JSON data of their
//! nodes. Readers are lenient about what they do not know (a newer version's fields) and strict
//! about what they need (an address, a weight), so that one bad node never breaks a list.

use std::collections::BTreeMap;

use rmif_core::compress::Compression;
use rmif_core::{ConsumerConfig, Serialization};
use serde::{Deserialize, Serialize};

/// A provider node's data: how to call it and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderMetadata {
    /// Relative weight for weighted balancing (`Provider_weight`).
    pub weight: u32,
    /// The service's version (from its key).
    pub version: String,
    /// The service's group (from its key).
    pub group: String,
    /// The application serving it (`Application`).
    pub application: String,
    /// The service's methods.
    pub methods: Vec<String>,
    /// Body formats the provider reads (it answers in the request's).
    pub serializations: Vec<String>,
    /// Compressions the provider reads.
    pub compressions: Vec<String>,
    /// The rmif version of the provider.
    pub rmif_version: String,
    /// When the provider started, milliseconds since the Unix epoch.
    pub start_time_ms: u64,
    /// Set by the registry's leader, never by the provider: the provider's announced address
    /// failed `Again_time` probes in a row. Consumers do not route to it while it is set; the
    /// leader clears it when probes succeed again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<Unavailable>,
    /// Anything else (`Metadata.<key>` lines of the properties file; a newer version's fields).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Why and since when the registry considers a provider unavailable (see
/// [`ProviderMetadata::unavailable`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Unavailable {
    /// What the last failed probe saw (refused, timed out, not rmif, …).
    pub reason: String,
    /// When the leader decided it, milliseconds since the Unix epoch.
    pub since_ms: u64,
}

impl Default for ProviderMetadata {
    fn default() -> Self {
        ProviderMetadata {
            weight: 100,
            version: String::new(),
            group: String::new(),
            application: String::new(),
            methods: Vec::new(),
            serializations: Vec::new(),
            compressions: Vec::new(),
            rmif_version: String::new(),
            start_time_ms: 0,
            unavailable: None,
            extra: BTreeMap::new(),
        }
    }
}

impl ProviderMetadata {
    /// Reads a provider node's data; the error says what is wrong with it.
    pub fn parse(data: &[u8]) -> Result<ProviderMetadata, String> {
        serde_json::from_slice(data).map_err(|e| format!("not provider metadata: {e}"))
    }

    /// The node's data.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, numbers and maps of them: JSON always encodes them.
        serde_json::to_vec(self).expect("provider metadata encodes as JSON")
    }

    /// Whether a consumer configured by `consumer` can call this provider; if not, why.
    /// Lists left empty (by a provider of an earlier version) accept anything.
    pub fn accepts(&self, consumer: &ConsumerConfig) -> Result<(), String> {
        let format = consumer.serialization.name();
        if !self.serializations.is_empty() && !self.serializations.iter().any(|s| s == format) {
            return Err(format!(
                "it reads {} and this consumer sends {format}",
                self.serializations.join(", ")
            ));
        }
        let compression = consumer.compression.algorithm;
        if compression != Compression::None
            && !self.compressions.is_empty()
            && !self.compressions.iter().any(|c| c == compression.name())
        {
            return Err(format!(
                "it reads {} and this consumer compresses with {}",
                self.compressions.join(", "),
                compression.name()
            ));
        }
        Ok(())
    }

    /// What consumers' balancers and layers see of it, as text.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = self
            .extra
            .iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => (key.clone(), text.clone()),
                other => (key.clone(), other.to_string()),
            })
            .collect();
        for (key, value) in [
            ("version", &self.version),
            ("group", &self.group),
            ("application", &self.application),
            ("rmif_version", &self.rmif_version),
        ] {
            if !value.is_empty() {
                labels.insert(key.to_owned(), value.clone());
            }
        }
        labels
    }
}

/// What this build of rmif reads, as provider metadata lists it.
pub(crate) fn supported_formats() -> (Vec<String>, Vec<String>) {
    let serializations = Serialization::ALL
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    let compressions = Compression::ALL
        .iter()
        .filter(|c| **c != Compression::None)
        .map(|c| c.name().to_owned())
        .collect();
    (serializations, compressions)
}

/// A consumer node's data: who calls the service and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerMetadata {
    /// The consumer's host address (port 0: consumers do not listen).
    pub address: String,
    /// Its process id, to tell consumers on one host apart.
    pub pid: u32,
    /// The application calling (`Application`).
    pub application: String,
    /// Its balancing policy (`Consumer_policy`).
    pub policy: String,
    /// The body format it sends (`Serialization`).
    pub serialization: String,
    /// The rmif version of the consumer.
    pub rmif_version: String,
    /// When the consumer started following the service, milliseconds since the Unix epoch.
    pub start_time_ms: u64,
    /// Anything else (`Metadata.<key>` lines; a newer version's fields).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ConsumerMetadata {
    /// Reads a consumer node's data.
    pub fn parse(data: &[u8]) -> Result<ConsumerMetadata, String> {
        serde_json::from_slice(data).map_err(|e| format!("not consumer metadata: {e}"))
    }

    /// The node's data.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("consumer metadata encodes as JSON")
    }
}

/// rmif's version, as nodes record it.
pub(crate) const RMIF_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_of_the_first_release_still_reads() {
        let old = ProviderMetadata::parse(br#"{"weight":30,"zone":"eu-1"}"#).unwrap();
        assert_eq!(old.weight, 30);
        assert!(old.methods.is_empty() && old.serializations.is_empty());
        assert_eq!(old.labels()["zone"], "eu-1");
        assert_eq!(old.accepts(&ConsumerConfig::default()), Ok(()));
    }

    #[test]
    fn a_newer_versions_fields_are_kept_and_bad_data_is_refused() {
        let newer = ProviderMetadata::parse(br#"{"weight":5,"shards":[1,2],"ttl":3}"#).unwrap();
        assert_eq!(newer.weight, 5);
        assert_eq!(newer.labels()["ttl"], "3");
        for bad in [&b"hello"[..], b"[1,2]", br#"{"weight":"heavy"}"#, b""] {
            assert!(ProviderMetadata::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_consumer_avoids_a_provider_that_cannot_read_what_it_sends() {
        let provider = ProviderMetadata {
            serializations: vec!["msgpack".into()],
            compressions: vec!["zstd".into()],
            ..ProviderMetadata::default()
        };
        let mut consumer = ConsumerConfig::default();
        assert_eq!(provider.accepts(&consumer), Ok(()));
        consumer.serialization = Serialization::Json;
        assert!(provider.accepts(&consumer).unwrap_err().contains("json"));
        consumer.serialization = Serialization::MsgPack;
        consumer.compression.algorithm = Compression::Lz4;
        assert!(provider.accepts(&consumer).unwrap_err().contains("lz4"));
    }

    #[test]
    fn metadata_round_trips() {
        let mut metadata = ProviderMetadata {
            weight: 7,
            methods: vec!["add".into()],
            application: "calc".into(),
            ..ProviderMetadata::default()
        };
        metadata
            .extra
            .insert("zone".into(), serde_json::Value::String("eu".into()));
        assert_eq!(ProviderMetadata::parse(&metadata.to_json()), Ok(metadata));
    }

    #[test]
    fn the_unavailable_mark_round_trips_and_is_absent_when_unset() {
        let mut metadata = ProviderMetadata::default();
        assert!(
            !String::from_utf8(metadata.to_json())
                .unwrap()
                .contains("unavailable")
        );
        metadata.unavailable = Some(Unavailable {
            reason: "connection refused".into(),
            since_ms: 5,
        });
        let parsed = ProviderMetadata::parse(&metadata.to_json()).unwrap();
        assert_eq!(parsed, metadata);
        assert!(parsed.labels().is_empty(), "the mark is not a label");
    }
}
