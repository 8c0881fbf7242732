//! A task that runs at a fixed rate on exactly one of the processes that register it: they
//! stand in an election, and only the leader runs the task. Each tick is numbered by the wall
//! clock (tick `n` falls at `n × period + offset` since the Unix epoch, UTC: every 24 hours
//! with an offset of 2 hours is daily at 02:00 UTC, as a cron line would say) and recorded in the registry with
//! compare-and-set before it runs, so no tick runs twice, even across a change of leader. When
//! the leader dies, the next process leads once the registry expires its session (or at once
//! if it resigned), and takes the next tick. Ticks that fall while no process leads (between a
//! leader's death and the expiry of its session) are skipped, not run late.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//!
//! use rmif_registry::RegistryClient;
//! use rmif_registry::recipes::schedule::Schedule;
//! # use rmif_registry_server::{RegistryConfig, RegistryServer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let data = tempfile::tempdir()?;
//! # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
//! # let members = [member.client_addr()];
//! let client = RegistryClient::connect(&members);
//! let runs = Arc::new(AtomicU64::new(0));
//! let counted = runs.clone();
//! let job = Schedule::every(Duration::from_millis(100))
//!     .start(client, "compact-logs", "worker-1", move |tick| {
//!         let counted = counted.clone();
//!         async move {
//!             counted.fetch_add(1, Ordering::SeqCst);
//!             println!("compacting for tick {tick}");
//!         }
//!     });
//! while runs.load(Ordering::SeqCst) < 2 {
//!     tokio::time::sleep(Duration::from_millis(20)).await;
//! }
//! job.stop().await;
//! # member.shutdown().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::election::{Election, Leadership};
use crate::client::CreateMode;
use crate::error::RegistryError;
use crate::{Consistency, RegistryClient};

/// Where schedules record their last tick.
pub const SCHEDULES_PATH: &str = "/rmif/schedules";

/// How long a process waits before standing again after its candidacy failed.
const STAND_AGAIN: Duration = Duration::from_millis(500);

/// When a task runs.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    period: Duration,
    offset: Duration,
    session_timeout: Duration,
}

/// A registered task; dropping it stops it too (without waiting).
#[derive(Debug)]
pub struct ScheduledJob {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Schedule {
    /// Every `period` (at least a millisecond), on tick boundaries of the wall clock.
    pub fn every(period: Duration) -> Self {
        Schedule {
            period: period.max(Duration::from_millis(1)),
            offset: Duration::ZERO,
            session_timeout: Duration::from_secs(5),
        }
    }

    /// Shifts the ticks by `offset` (taken modulo the period) from the period's boundaries:
    /// `Schedule::every(DAY).offset(2 * HOUR)` runs daily at 02:00 UTC.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rmif_registry::recipes::schedule::Schedule;
    ///
    /// const HOUR: Duration = Duration::from_secs(3600);
    /// let nightly = Schedule::every(24 * HOUR).offset(2 * HOUR);
    /// // The next run is at most a day away.
    /// assert!(nightly.until_next() <= 24 * HOUR);
    /// ```
    pub fn offset(mut self, offset: Duration) -> Self {
        self.offset = Duration::from_nanos(
            (offset.as_nanos() % self.period.as_nanos()).min(u128::from(u64::MAX)) as u64,
        );
        self
    }

    /// How long until the next tick.
    pub fn until_next(&self) -> Duration {
        until_tick(next_tick(self), self)
    }

    /// The session timeout of each process's candidacy: how long a dead leader holds the task
    /// at most (default 5 s).
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Registers `task` under `name` for this process (`id`, as the election shows it) and
    /// starts taking part; `task` gets each tick's number and runs on this process only while
    /// it leads.
    pub fn start<F, Fut>(
        self,
        client: RegistryClient,
        name: &str,
        id: &str,
        task: F,
    ) -> ScheduledJob
    where
        F: FnMut(u64) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let job = run(
            self,
            client,
            name.to_owned(),
            id.to_owned(),
            task,
            stop.clone(),
        );
        ScheduledJob {
            stop,
            task: Some(tokio::spawn(job)),
        }
    }
}

impl ScheduledJob {
    /// Stops taking part (a tick running now is stopped too) and waits until it has.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ScheduledJob {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The job: stand, and while leading run each tick that no one ran yet.
async fn run<F, Fut>(
    schedule: Schedule,
    client: RegistryClient,
    name: String,
    id: String,
    mut task: F,
    stop: CancellationToken,
) where
    F: FnMut(u64) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let record = format!("{SCHEDULES_PATH}/{name}");
    loop {
        let stood = tokio::select! {
            stood = lead_while_possible(&schedule, &client, &name, &id, &record, &mut task) => stood,
            _ = stop.cancelled() => return,
        };
        if let Err(error) = stood {
            tracing::warn!(schedule = %name, %error, "cannot take part in the schedule; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(STAND_AGAIN) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One candidacy: waits to lead, then runs ticks until leadership is lost.
async fn lead_while_possible<F, Fut>(
    schedule: &Schedule,
    client: &RegistryClient,
    name: &str,
    id: &str,
    record: &str,
    task: &mut F,
) -> Result<(), RegistryError>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    client.create_path(SCHEDULES_PATH).await?;
    match client.create(record, b"0", CreateMode::PERSISTENT).await {
        Ok(_) | Err(RegistryError::NodeExists { .. }) => {}
        Err(error) => return Err(error),
    }
    let session = Arc::new(client.open_session(schedule.session_timeout).await?);
    let election = Election::new(session.clone(), &format!("schedule-{name}")).await?;
    let mut candidacy = election.campaign(id).await?;
    if candidacy.leading().await.is_err() {
        return Ok(());
    }
    let mut lost = candidacy.changes();
    loop {
        let tick = next_tick(schedule);
        let due = tokio::time::Instant::now() + until_tick(tick, schedule);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = lost.wait_for(|s| matches!(s, Leadership::Lost { .. })) => return Ok(()),
        }
        if !claim(client, record, tick).await? {
            continue;
        }
        tokio::select! {
            _ = task(tick) => {}
            // Leadership lost while running: stop acting on its behalf.
            _ = lost.wait_for(|s| matches!(s, Leadership::Lost { .. })) => return Ok(()),
        }
    }
}

/// Records `tick` as run, unless it (or a later one) already is; true if this process may
/// run it.
async fn claim(client: &RegistryClient, record: &str, tick: u64) -> Result<bool, RegistryError> {
    let node = client.get(record, Consistency::Linearizable).await?;
    let last: u64 = std::str::from_utf8(&node.data)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    if last >= tick {
        return Ok(false);
    }
    match client
        .set(record, tick.to_string().as_bytes(), Some(node.stat.version))
        .await
    {
        Ok(_) => Ok(true),
        // Another process recorded a tick meanwhile (an old leader that had not yet noticed).
        Err(RegistryError::BadVersion { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Nanoseconds since the Unix epoch, less the schedule's offset.
fn shifted_now(schedule: &Schedule) -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .saturating_sub(schedule.offset.as_nanos())
}

/// The number of the next tick to come.
fn next_tick(schedule: &Schedule) -> u64 {
    (shifted_now(schedule) / schedule.period.as_nanos().max(1)) as u64 + 1
}

/// How long until tick `tick` is due.
fn until_tick(tick: u64, schedule: &Schedule) -> Duration {
    let due = u128::from(tick) * schedule.period.as_nanos();
    let wait = due.saturating_sub(shifted_now(schedule));
    Duration::from_nanos(wait.min(u128::from(u64::MAX)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_tick_is_due_within_one_period() {
        let schedule = Schedule::every(Duration::from_millis(250));
        let tick = next_tick(&schedule);
        let wait = until_tick(tick, &schedule);
        assert!(wait <= schedule.period, "{wait:?}");
        assert_eq!(until_tick(tick - 2, &schedule), Duration::ZERO);
    }

    #[test]
    fn an_offset_moves_the_ticks_off_the_period_boundaries() {
        let hour = Duration::from_secs(3600);
        let at_two = Schedule::every(24 * hour).offset(2 * hour);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let next = now + at_two.until_next();
        // 02:00 UTC, give or take the time this test takes.
        let into_day = next.as_secs() % (24 * 3600);
        assert!(
            (2 * 3600 - 1..2 * 3600 + 2).contains(&into_day),
            "{into_day}"
        );
        // An offset of a whole period or more wraps around.
        assert_eq!(
            Schedule::every(hour).offset(hour + hour / 2).offset,
            hour / 2
        );
    }
}
