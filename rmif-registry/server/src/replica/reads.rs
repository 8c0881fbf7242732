//! Linearizable reads (ReadIndex): the reads waiting for a read index, the requests raft-rs is
//! working on, and the reads whose index is known but not applied here yet.
//!
//! One request serves every read that arrived since the previous one. raft-rs drops a request
//! silently while there is no leader, so one unanswered for a while is made again.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use rmif_registry::RegistryError;

/// Where a read hears its read point (this member's applied index once it is safe to read).
pub type ReadReply = oneshot::Sender<Result<u64, RegistryError>>;

/// Reads that share one read index request.
struct ReadBatch {
    waiting: Vec<ReadReply>,
    issued: Instant,
}

/// Every read not answered yet.
pub struct Reads {
    /// A request unanswered this long is made again, under a new id.
    retry_after: Duration,
    next_id: u64,
    /// Arrived since the last request.
    unissued: Vec<ReadReply>,
    /// By request id (the request's context).
    in_flight: HashMap<u64, ReadBatch>,
    /// By the read index they wait for this member to apply.
    awaiting_apply: BTreeMap<u64, Vec<ReadReply>>,
}

impl Reads {
    /// No reads yet; requests unanswered for `retry_after` are made again.
    pub fn new(retry_after: Duration) -> Self {
        Reads {
            retry_after,
            next_id: 0,
            unissued: Vec::new(),
            in_flight: HashMap::new(),
            awaiting_apply: BTreeMap::new(),
        }
    }

    /// A read arrived.
    pub fn add(&mut self, reply: ReadReply) {
        self.unissued.push(reply);
    }

    /// Groups the reads that arrived since the last request into a new one; returns the
    /// context to hand raft-rs's `read_index`, if there were any.
    pub fn issue(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.unissued.is_empty() {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.insert(
            id,
            ReadBatch {
                waiting: std::mem::take(&mut self.unissued),
                issued: now,
            },
        );
        Some(id.to_be_bytes().to_vec())
    }

    /// raft-rs answered the request with `context`: its reads may proceed once `index` is
    /// applied here (at once if it is: `applied`).
    pub fn on_read_state(&mut self, index: u64, context: &[u8], applied: u64) {
        let Ok(id) = <[u8; 8]>::try_from(context).map(u64::from_be_bytes) else {
            return;
        };
        let Some(batch) = self.in_flight.remove(&id) else {
            return;
        };
        if applied >= index {
            for reply in batch.waiting {
                let _ = reply.send(Ok(applied));
            }
        } else {
            self.awaiting_apply
                .entry(index)
                .or_default()
                .extend(batch.waiting);
        }
    }

    /// This member applied up to `applied`: the reads waiting for it proceed.
    pub fn on_applied(&mut self, applied: u64) {
        let ready: Vec<u64> = self
            .awaiting_apply
            .range(..=applied)
            .map(|(index, _)| *index)
            .collect();
        for index in ready {
            for reply in self.awaiting_apply.remove(&index).unwrap_or_default() {
                let _ = reply.send(Ok(applied));
            }
        }
    }

    /// Requests that got no answer in time (no leader, a lost message) go again with the next
    /// request; reads whose caller gave up are dropped.
    pub fn retry_stale(&mut self, now: Instant) {
        let stale: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, batch)| now.duration_since(batch.issued) >= self.retry_after)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(batch) = self.in_flight.remove(&id) {
                self.unissued
                    .extend(batch.waiting.into_iter().filter(|w| !w.is_closed()));
            }
        }
    }

    /// Every read not answered yet fails.
    pub fn fail_all(&mut self, reason: &str) {
        let waiting = self
            .unissued
            .drain(..)
            .chain(self.in_flight.drain().flat_map(|(_, b)| b.waiting))
            .chain(
                std::mem::take(&mut self.awaiting_apply)
                    .into_values()
                    .flatten(),
            );
        for reply in waiting {
            let _ = reply.send(Err(RegistryError::NoQuorum(reason.to_owned())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = oneshot::Receiver<Result<u64, RegistryError>>;

    fn read(reads: &mut Reads) -> Answer {
        let (reply, answer) = oneshot::channel();
        reads.add(reply);
        answer
    }

    #[test]
    fn reads_arriving_together_share_a_request_and_wait_for_apply() {
        let mut reads = Reads::new(Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(reads.issue(now), None, "no reads, no request");
        let mut first = read(&mut reads);
        let mut second = read(&mut reads);
        let context = reads.issue(now).unwrap();
        assert_eq!(reads.issue(now), None);
        let mut later = read(&mut reads);
        let later_context = reads.issue(now).unwrap();
        assert_ne!(context, later_context);

        reads.on_read_state(10, &context, 8);
        assert!(first.try_recv().is_err(), "index 10 is not applied yet");
        reads.on_applied(9);
        assert!(second.try_recv().is_err());
        reads.on_applied(11);
        assert_eq!(first.try_recv().unwrap().unwrap(), 11);
        assert_eq!(second.try_recv().unwrap().unwrap(), 11);

        reads.on_read_state(10, &later_context, 11);
        assert_eq!(later.try_recv().unwrap().unwrap(), 11, "applied already");
        reads.on_read_state(10, b"garbage", 11);
    }

    #[test]
    fn an_unanswered_request_is_made_again_and_its_late_answer_ignored() {
        let mut reads = Reads::new(Duration::from_millis(150));
        let start = Instant::now();
        let mut kept = read(&mut reads);
        let abandoned = read(&mut reads);
        let first = reads.issue(start).unwrap();
        reads.retry_stale(start + Duration::from_millis(149));
        assert_eq!(reads.issue(start), None, "not stale yet");
        drop(abandoned);
        reads.retry_stale(start + Duration::from_millis(150));
        let second = reads.issue(start + Duration::from_millis(150)).unwrap();
        assert_ne!(first, second);

        reads.on_read_state(3, &first, 5);
        assert!(kept.try_recv().is_err(), "the first request is forgotten");
        reads.on_read_state(3, &second, 5);
        assert_eq!(kept.try_recv().unwrap().unwrap(), 5);
        assert!(reads.in_flight.is_empty() && reads.unissued.is_empty());
    }

    #[test]
    fn failing_all_answers_every_read_wherever_it_waits() {
        let mut reads = Reads::new(Duration::from_secs(1));
        let now = Instant::now();
        let mut applying = read(&mut reads);
        let context = reads.issue(now).unwrap();
        reads.on_read_state(9, &context, 1);
        let mut in_flight = read(&mut reads);
        reads.issue(now);
        let mut unissued = read(&mut reads);
        reads.fail_all("stopping");
        for answer in [&mut applying, &mut in_flight, &mut unissued] {
            assert!(matches!(
                answer.try_recv().unwrap(),
                Err(RegistryError::NoQuorum(reason)) if reason == "stopping"
            ));
        }
    }
}
