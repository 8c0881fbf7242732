//! The registry's provider alerts: what its leader records, with `Monitor_log=true`, when its
//! probes find a provider unavailable and when it answers again. The last [`ALERTS_KEPT`] are
//! kept, oldest first, as one JSON array in the node [`ALERTS_PATH`], so that any member answers
//! for them and they outlive a change of leader.

use serde::{Deserialize, Serialize};

use crate::RegistryError;
use crate::client::{Consistency, RegistryClient};

/// The node holding the alerts.
pub const ALERTS_PATH: &str = "/rmif/alerts";
/// How many alerts the registry keeps; older ones are dropped.
pub const ALERTS_KEPT: usize = 100;

/// What happened to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// It failed `Again_time` probes in a row: consumers stop calling it.
    Unavailable,
    /// It answered a probe again after being unavailable.
    Available,
}

/// One alert about one provider of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// When the leader decided it, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub kind: AlertKind,
    /// The service key.
    pub service: String,
    /// The provider's announced address.
    pub address: String,
    /// What the failing probes saw (for `Available`: what they saw while it was down).
    pub reason: String,
    /// For `Available`: how long it was unavailable, in milliseconds; 0 otherwise.
    #[serde(default)]
    pub down_ms: u64,
}

impl Alert {
    /// Reads the alerts node's data; the error says what is wrong with it.
    pub fn parse_list(data: &[u8]) -> Result<Vec<Alert>, String> {
        if data.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_slice(data).map_err(|e| format!("{ALERTS_PATH} does not hold alerts: {e}"))
    }

    /// The alerts node's data for `alerts`: the last [`ALERTS_KEPT`] of them.
    pub fn list_to_json(alerts: &[Alert]) -> Vec<u8> {
        let kept = &alerts[alerts.len().saturating_sub(ALERTS_KEPT)..];
        serde_json::to_vec(kept).expect("alerts encode as JSON")
    }
}

/// The alerts the registry keeps, oldest first (none if it never recorded one).
pub async fn alerts(client: &RegistryClient) -> Result<Vec<Alert>, RegistryError> {
    match client.get(ALERTS_PATH, Consistency::Linearizable).await {
        Ok(node) => Alert::parse_list(&node.data).map_err(|reason| RegistryError::NotAllowed {
            path: ALERTS_PATH.to_owned(),
            reason,
        }),
        Err(RegistryError::NoNode { .. }) => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(at_ms: u64) -> Alert {
        Alert {
            at_ms,
            kind: AlertKind::Unavailable,
            service: "calc".into(),
            address: "10.0.0.1:9000".into(),
            reason: "connection refused".into(),
            down_ms: 0,
        }
    }

    #[test]
    fn only_the_last_alerts_are_kept_oldest_first() {
        let many: Vec<Alert> = (0..ALERTS_KEPT as u64 + 5).map(alert).collect();
        let kept = Alert::parse_list(&Alert::list_to_json(&many)).unwrap();
        assert_eq!(kept.len(), ALERTS_KEPT);
        assert_eq!(kept[0].at_ms, 5);
        assert_eq!(Alert::parse_list(b"").unwrap(), []);
        assert!(Alert::parse_list(b"{").is_err());
        let text = String::from_utf8(Alert::list_to_json(&kept[..1])).unwrap();
        assert!(text.contains(r#""kind":"unavailable""#), "{text}");
    }
}
