//! An in-process peer network for tests: a hub that routes messages between the replicas of one
//! test, with faults drawn from a seeded generator (per-link loss and delay) and partitions.
//!
//! It reports what the TCP network reports in the same situations, so that the replica's
//! reactions to them run in tests too: cutting a link closes the "connection", and the receiver
//! hears [`PeerInbound::Disconnected`] (as when a peer's process dies or a proxy cuts it);
//! sending over a cut link fails like a refused connection, with [`PeerEvent::Unreachable`]
//! (and a failed snapshot). Messages on one link arrive in the order they were sent, as on a
//! TCP connection, however their delays were drawn.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::{INBOUND_CAPACITY, PeerEvent, PeerInbound, PeerMessage, PeerNetwork, Peers};

/// What a link does to the messages that cross it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkFaults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Shortest time a message takes.
    pub min_delay: Duration,
    /// Longest time a message takes.
    pub max_delay: Duration,
}

impl LinkFaults {
    /// A perfect link: nothing lost, nothing delayed.
    pub const NONE: LinkFaults = LinkFaults {
        loss: 0.0,
        min_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };
}

/// The hub: members join it, tests break and heal its links. Clones share the same hub.
#[derive(Clone)]
pub struct MemoryNetwork {
    hub: Arc<Mutex<Hub>>,
    /// Wakes the delivery task when a message is queued.
    queued: Arc<Notify>,
}

/// Where a member hears from the network.
struct Mailbox {
    inbound: mpsc::Sender<PeerInbound>,
    events: mpsc::UnboundedSender<PeerEvent>,
}

/// A message on its way, or a connection's end.
struct Delivery {
    from: u64,
    to: u64,
    what: PeerInbound,
}

struct Hub {
    rng: fastrand::Rng,
    members: BTreeMap<u64, Mailbox>,
    /// Faults of every link not in `link_faults`.
    default_faults: LinkFaults,
    /// Faults of particular links, by (from, to).
    link_faults: HashMap<(u64, u64), LinkFaults>,
    /// Links (from, to) that carry nothing.
    cut: BTreeSet<(u64, u64)>,
    /// Deliveries by arrival time, then by the order they were sent.
    in_transit: BTreeMap<(Instant, u64), Delivery>,
    /// The latest arrival scheduled on each link, which later messages may not overtake.
    last_arrival: HashMap<(u64, u64), Instant>,
    sent: u64,
}

impl MemoryNetwork {
    /// A network whose faults are drawn from `seed`. Starts the task that delivers messages when
    /// they arrive, so it must be called within a tokio runtime.
    pub fn new(seed: u64) -> Self {
        let network = MemoryNetwork {
            hub: Arc::new(Mutex::new(Hub {
                rng: fastrand::Rng::with_seed(seed),
                members: BTreeMap::new(),
                default_faults: LinkFaults::NONE,
                link_faults: HashMap::new(),
                cut: BTreeSet::new(),
                in_transit: BTreeMap::new(),
                last_arrival: HashMap::new(),
                sent: 0,
            })),
            queued: Arc::new(Notify::new()),
        };
        tokio::spawn(deliver(network.clone()));
        network
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attaches member `id`; a member that joins again (a restart) replaces its old mailbox.
    pub fn join(&self, id: u64) -> Peers {
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
        let (events_tx, events) = mpsc::unbounded_channel();
        self.hub().members.insert(
            id,
            Mailbox {
                inbound: inbound_tx,
                events: events_tx,
            },
        );
        Peers {
            network: Box::new(Endpoint {
                me: id,
                network: self.clone(),
            }),
            inbound,
            events,
        }
    }

    /// Sets the faults of every link, except those set one by one.
    pub fn set_default_faults(&self, faults: LinkFaults) {
        self.hub().default_faults = faults;
    }

    /// Sets the faults of the link from `from` to `to`.
    pub fn set_link_faults(&self, from: u64, to: u64, faults: LinkFaults) {
        self.hub().link_faults.insert((from, to), faults);
    }

    /// Cuts the links between `a` and `b` both ways: what is in transit is lost, each side
    /// hears that the other's connection closed, and nothing crosses until [`Self::heal`].
    pub fn cut(&self, a: u64, b: u64) {
        let mut hub = self.hub();
        hub.cut_link(a, b);
        hub.cut_link(b, a);
        drop(hub);
        self.queued.notify_one();
    }

    /// Cuts every link of member `id` (a crashed or partitioned member).
    pub fn isolate(&self, id: u64) {
        let others: Vec<u64> = self.hub().members.keys().copied().collect();
        for other in others.into_iter().filter(|other| *other != id) {
            self.cut(id, other);
        }
    }

    /// Restores every cut link (faults set with the `set_*` calls stay).
    pub fn heal(&self) {
        self.hub().cut.clear();
    }

    fn send(&self, from: u64, to: u64, message: PeerMessage) {
        self.hub().send(from, to, message);
        self.queued.notify_one();
    }
}

impl Hub {
    fn report(&self, to: u64, event: PeerEvent) {
        if let Some(mailbox) = self.members.get(&to) {
            let _ = mailbox.events.send(event);
        }
    }

    fn cut_link(&mut self, from: u64, to: u64) {
        if !self.cut.insert((from, to)) {
            return;
        }
        // The connection's buffers go with it.
        self.in_transit
            .retain(|_, delivery| (delivery.from, delivery.to) != (from, to));
        self.last_arrival.remove(&(from, to));
        let now = Instant::now();
        self.schedule(from, to, now, PeerInbound::Disconnected(from));
    }

    fn schedule(&mut self, from: u64, to: u64, at: Instant, what: PeerInbound) {
        let at = self
            .last_arrival
            .get(&(from, to))
            .map_or(at, |last| at.max(*last));
        self.last_arrival.insert((from, to), at);
        self.sent += 1;
        self.in_transit
            .insert((at, self.sent), Delivery { from, to, what });
    }

    fn send(&mut self, from: u64, to: u64, message: PeerMessage) {
        let is_snapshot = message.is_snapshot();
        if !self.members.contains_key(&to) || self.cut.contains(&(from, to)) {
            self.report(from, PeerEvent::Unreachable(to));
            if is_snapshot {
                self.report(from, PeerEvent::SnapshotSent(to, false));
            }
            return;
        }
        let faults = self
            .link_faults
            .get(&(from, to))
            .copied()
            .unwrap_or(self.default_faults);
        if faults.loss > 0.0 && self.rng.f64() < faults.loss {
            if is_snapshot {
                self.report(from, PeerEvent::SnapshotSent(to, false));
            }
            return;
        }
        if is_snapshot {
            self.report(from, PeerEvent::SnapshotSent(to, true));
        }
        let spread = faults.max_delay.saturating_sub(faults.min_delay);
        let delay = faults.min_delay + spread.mul_f64(self.rng.f64());
        let what = match message {
            PeerMessage::Raft(message) => PeerInbound::Raft(message),
            PeerMessage::Touch(sessions) => PeerInbound::Touch(sessions),
            PeerMessage::LostState => PeerInbound::LostState(from),
        };
        self.schedule(from, to, Instant::now() + delay, what);
    }
}

/// Hands each message to its receiver when it arrives. A receiver whose queue is full or whose
/// replica stopped loses the message, as a crashed process loses what reached its socket.
async fn deliver(network: MemoryNetwork) {
    loop {
        let next = {
            let mut hub = network.hub();
            let now = Instant::now();
            while let Some(entry) = hub.in_transit.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let delivery = entry.remove();
                if let Some(mailbox) = hub.members.get(&delivery.to) {
                    let _ = mailbox.inbound.try_send(delivery.what);
                }
            }
            hub.in_transit.keys().next().map(|(at, _)| *at)
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = network.queued.notified() => {}
                }
            }
            None => network.queued.notified().await,
        }
    }
}

/// One member's sending side.
struct Endpoint {
    me: u64,
    network: MemoryNetwork,
}

impl PeerNetwork for Endpoint {
    fn send(&self, to: u64, message: PeerMessage) {
        self.network.send(self.me, to, message);
    }
}

#[cfg(test)]
mod tests {
    use raft::prelude::{Message, MessageType};

    use super::*;

    fn raft(from: u64, to: u64, term: u64) -> PeerMessage {
        PeerMessage::Raft(Message {
            from,
            to,
            term,
            ..Message::default()
        })
    }

    fn snapshot(from: u64, to: u64) -> PeerMessage {
        let mut message = Message {
            from,
            to,
            ..Message::default()
        };
        message.set_msg_type(MessageType::MsgSnapshot);
        PeerMessage::Raft(message)
    }

    /// The terms of the Raft messages waiting in `peers`' inbox, and the connections it heard
    /// close.
    fn drain(peers: &mut Peers) -> (Vec<u64>, Vec<u64>) {
        let (mut terms, mut closed) = (Vec::new(), Vec::new());
        while let Ok(received) = peers.inbound.try_recv() {
            match received {
                PeerInbound::Raft(message) => terms.push(message.term),
                PeerInbound::Disconnected(from) => closed.push(from),
                other => panic!("unexpected {other:?}"),
            }
        }
        (terms, closed)
    }

    fn events(peers: &mut Peers) -> Vec<PeerEvent> {
        std::iter::from_fn(|| peers.events.try_recv().ok()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_messages_arrive_in_order_after_their_delay() {
        let network = MemoryNetwork::new(7);
        let one = network.join(1);
        let mut two = network.join(2);
        network.set_link_faults(
            1,
            2,
            LinkFaults {
                loss: 0.0,
                min_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
            },
        );
        for term in 1..=20 {
            one.network.send(2, raft(1, 2, term));
        }
        tokio::time::sleep(Duration::from_millis(9)).await;
        assert_eq!(
            drain(&mut two).0,
            Vec::<u64>::new(),
            "nothing before the least delay"
        );
        tokio::time::sleep(Duration::from_millis(42)).await;
        assert_eq!(drain(&mut two).0, (1..=20).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn loss_follows_the_seed_and_the_probability() {
        async fn delivered(seed: u64) -> Vec<u64> {
            let network = MemoryNetwork::new(seed);
            let one = network.join(1);
            let mut two = network.join(2);
            network.set_default_faults(LinkFaults {
                loss: 0.5,
                ..LinkFaults::NONE
            });
            for term in 1..=200 {
                one.network.send(2, raft(1, 2, term));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            drain(&mut two).0
        }
        let first = delivered(3).await;
        assert_eq!(
            first,
            delivered(3).await,
            "the same seed loses the same messages"
        );
        assert!(
            (60..140).contains(&first.len()),
            "about half of 200 arrive: {}",
            first.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_closes_connections_and_refuses_sends_until_healed() {
        let network = MemoryNetwork::new(1);
        let mut one = network.join(1);
        let mut two = network.join(2);
        let mut three = network.join(3);
        network.set_link_faults(
            1,
            2,
            LinkFaults {
                min_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(100),
                ..LinkFaults::NONE
            },
        );
        one.network.send(2, raft(1, 2, 1));
        network.isolate(1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            drain(&mut two),
            (vec![], vec![1]),
            "what was in transit is lost with the connection"
        );
        assert_eq!(drain(&mut three), (vec![], vec![1]));
        assert_eq!(drain(&mut one), (vec![], vec![2, 3]));

        one.network.send(3, raft(1, 3, 2));
        one.network.send(3, snapshot(1, 3));
        three.network.send(1, raft(3, 1, 2));
        assert_eq!(
            events(&mut one),
            [
                PeerEvent::Unreachable(3),
                PeerEvent::Unreachable(3),
                PeerEvent::SnapshotSent(3, false)
            ]
        );
        assert_eq!(events(&mut three), [PeerEvent::Unreachable(1)]);

        network.heal();
        one.network.send(3, raft(1, 3, 3));
        one.network.send(3, snapshot(1, 3));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(events(&mut one), [PeerEvent::SnapshotSent(3, true)]);
        assert_eq!(drain(&mut three), (vec![3, 0], vec![]));
    }
}
