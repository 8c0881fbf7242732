//! Recording alerts: the leader appends each to the list in `/rmif/alerts` (the last
//! `ALERTS_KEPT`), one write after the other, in the order they happened.

use std::time::Duration;

use rmif_registry::RegistryError;
use rmif_registry::discovery::{ALERTS_PATH, Alert};
use rmif_registry::path;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::replica::Replica;
use crate::tree::Action;

/// How long one write of the list may take.
const WRITE_LIMIT: Duration = Duration::from_secs(5);
/// Attempts at one alert when a write races another (a previous leader's last one).
const ATTEMPTS: usize = 3;

/// Starts the task that records the alerts sent to the returned channel; it ends when the
/// channel is dropped.
pub(super) fn start_writer(replica: Replica) -> mpsc::UnboundedSender<Alert> {
    let (alerts, mut queued) = mpsc::unbounded_channel::<Alert>();
    tokio::spawn(async move {
        while let Some(alert) = queued.recv().await {
            let mut outcome = Ok(());
            for _ in 0..ATTEMPTS {
                outcome = append(&replica, &alert).await;
                if outcome.is_ok() {
                    break;
                }
            }
            if let Err(error) = outcome {
                tracing::warn!(%error, service = %alert.service, address = %alert.address, "could not keep the alert in {ALERTS_PATH}");
            }
        }
    });
    alerts
}

/// Appends `alert` to the list as this member's tree holds it, conditional on its version.
async fn append(replica: &Replica, alert: &Alert) -> Result<(), RegistryError> {
    let (current, parent_exists) = {
        let tree = replica
            .shared()
            .tree
            .read()
            .unwrap_or_else(|p| p.into_inner());
        (
            tree.get(ALERTS_PATH).ok(),
            tree.stat(path::parent(ALERTS_PATH)).is_ok(),
        )
    };
    let deadline = Instant::now() + WRITE_LIMIT;
    let action = match current {
        Some((data, stat)) => {
            // A list damaged by hand is started again rather than kept failing.
            let mut list = Alert::parse_list(&data).unwrap_or_default();
            list.push(alert.clone());
            Action::Set {
                path: ALERTS_PATH.to_owned(),
                data: Alert::list_to_json(&list),
                version: Some(stat.version),
            }
        }
        None => {
            if !parent_exists {
                let parent = Action::Create {
                    path: path::parent(ALERTS_PATH).to_owned(),
                    data: Vec::new(),
                    ephemeral: false,
                    sequential: false,
                };
                match replica.propose(parent, None, deadline).await?.outcome {
                    Ok(_) | Err(RegistryError::NodeExists { .. }) => {}
                    Err(error) => return Err(error),
                }
            }
            Action::Create {
                path: ALERTS_PATH.to_owned(),
                data: Alert::list_to_json(std::slice::from_ref(alert)),
                ephemeral: false,
                sequential: false,
            }
        }
    };
    replica
        .propose(action, None, deadline)
        .await?
        .outcome
        .map(|_| ())
}
