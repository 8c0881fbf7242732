//! Load balancing: which provider serves the next call. Policies see providers through
//! [`Candidates`], so they work on the consumer's live view without copying it per call.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::protocol::ids;

/// The providers a balancer chooses among, indexed `0..len()`.
pub trait Candidates {
    /// Number of providers (available or not).
    fn len(&self) -> usize;
    /// True when there are no providers.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// False for a provider that is known to be unreachable or was excluded for this call.
    fn is_available(&self, index: usize) -> bool;
    /// Relative weight (1 or more).
    fn weight(&self, index: usize) -> u32;
    /// Calls currently in flight to this provider from this consumer.
    fn active(&self, index: usize) -> u32;
    /// The provider's latency estimate in nanoseconds (0 = no sample yet): a peak-sensitive
    /// moving average (see [`PeakEwma`]).
    fn latency_ns(&self, index: usize) -> u64;
    /// A stable identity of the provider (a hash of its address), for consistent hashing.
    fn identity(&self, index: usize) -> u64;
    /// Changes whenever the set of providers changes.
    fn revision(&self) -> u64;
}

/// A load-balancing policy.
pub trait Balancer: Send + Sync + 'static {
    /// Picks an available provider, or `None` if none is available. `request_hash` is a hash of
    /// the serialized arguments when [`Balancer::needs_request_hash`] is true, else 0.
    fn pick(&self, candidates: &dyn Candidates, request_hash: u64) -> Option<usize>;

    /// Whether [`Balancer::pick`] uses `request_hash` (computing it costs a pass over the body).
    fn needs_request_hash(&self) -> bool {
        false
    }
}

/// The built-in policies (`Consumer_policy` in configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BalancePolicy {
    /// Uniformly random (`random`, the default).
    #[default]
    Random,
    /// In turn (`rotate`, also `round_robin`).
    RoundRobin,
    /// Random in proportion to provider weights (`weighted`).
    Weighted,
    /// In turn in proportion to provider weights, interleaved (`smooth_weighted`, also
    /// `weighted_round_robin`): weights 5, 1, 1 give a a b a c a a.
    SmoothWeighted,
    /// The provider with the fewest calls in flight (`least_active`).
    LeastActive,
    /// Power of two choices over peak-EWMA latency times load (`p2c_ewma`, also `p2c`).
    P2cEwma,
    /// The same arguments go to the same provider while it is available (`consistent_hash`).
    ConsistentHash,
}

impl BalancePolicy {
    /// Configuration names, in declaration order.
    pub const NAMES: [&'static str; 7] = [
        "random",
        "rotate",
        "weighted",
        "smooth_weighted",
        "least_active",
        "p2c_ewma",
        "consistent_hash",
    ];

    /// The policy with this configuration name (case-insensitive; aliases accepted).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().replace('-', "_").as_str() {
            "random" => BalancePolicy::Random,
            "rotate" | "round_robin" | "roundrobin" => BalancePolicy::RoundRobin,
            "weighted" | "weighted_random" => BalancePolicy::Weighted,
            "smooth_weighted" | "weighted_round_robin" => BalancePolicy::SmoothWeighted,
            "least_active" | "leastactive" => BalancePolicy::LeastActive,
            "p2c_ewma" | "p2c" => BalancePolicy::P2cEwma,
            "consistent_hash" | "consistenthash" => BalancePolicy::ConsistentHash,
            _ => return None,
        })
    }

    /// A fresh balancer of this policy.
    pub fn build(self) -> Box<dyn Balancer> {
        match self {
            BalancePolicy::Random => Box::new(Random),
            BalancePolicy::RoundRobin => Box::new(RoundRobin::default()),
            BalancePolicy::Weighted => Box::new(Weighted),
            BalancePolicy::SmoothWeighted => Box::new(SmoothWeighted::default()),
            BalancePolicy::LeastActive => Box::new(LeastActive),
            BalancePolicy::P2cEwma => Box::new(P2cEwma),
            BalancePolicy::ConsistentHash => Box::new(ConsistentHash::default()),
        }
    }
}

/// First available index at or after `start`, wrapping around.
fn scan_from(c: &dyn Candidates, start: usize) -> Option<usize> {
    let n = c.len();
    (0..n).map(|k| (start + k) % n).find(|&i| c.is_available(i))
}

/// A few random probes, then a scan: uniform while most providers are up, never fails while one
/// is.
fn random_available(c: &dyn Candidates) -> Option<usize> {
    let n = c.len();
    if n == 0 {
        return None;
    }
    for _ in 0..3 {
        let i = fastrand::usize(..n);
        if c.is_available(i) {
            return Some(i);
        }
    }
    scan_from(c, fastrand::usize(..n))
}

/// Uniformly random.
#[derive(Debug, Default)]
pub struct Random;

impl Balancer for Random {
    fn pick(&self, c: &dyn Candidates, _: u64) -> Option<usize> {
        random_available(c)
    }
}

/// In turn.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick(&self, c: &dyn Candidates, _: u64) -> Option<usize> {
        let n = c.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        scan_from(c, start)
    }
}

/// Random in proportion to weight.
#[derive(Debug, Default)]
pub struct Weighted;

impl Balancer for Weighted {
    fn pick(&self, c: &dyn Candidates, _: u64) -> Option<usize> {
        let available = || (0..c.len()).filter(|&i| c.is_available(i));
        let total: u64 = available().map(|i| u64::from(c.weight(i).max(1))).sum();
        if total == 0 {
            return None;
        }
        let mut point = fastrand::u64(..total);
        for i in available() {
            let weight = u64::from(c.weight(i).max(1));
            if point < weight {
                return Some(i);
            }
            point -= weight;
        }
        None
    }
}

/// Smooth weighted round-robin: each pick adds every available provider's weight to its
/// running credit, takes the provider with the most credit and charges it the sum of the
/// weights. Over any run of picks each provider gets its weight's share, and a heavy provider's
/// turns are spread out rather than taken in a row.
#[derive(Debug, Default)]
pub struct SmoothWeighted {
    credits: Mutex<Credits>,
}

/// Running credits per provider index, for one revision of the provider list.
#[derive(Debug, Default)]
struct Credits {
    revision: u64,
    credit: Vec<i64>,
}

impl Balancer for SmoothWeighted {
    fn pick(&self, c: &dyn Candidates, _: u64) -> Option<usize> {
        let mut credits = self
            .credits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if credits.revision != c.revision() || credits.credit.len() != c.len() {
            // A new list starts everyone from nothing.
            credits.revision = c.revision();
            credits.credit = vec![0; c.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in (0..c.len()).filter(|&i| c.is_available(i)) {
            let weight = i64::from(c.weight(i).max(1));
            credits.credit[i] += weight;
            total += weight;
            if best.is_none_or(|b| credits.credit[i] > credits.credit[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        credits.credit[best] -= total;
        Some(best)
    }
}

/// The fewest calls in flight; ties broken at random.
#[derive(Debug, Default)]
pub struct LeastActive;

impl Balancer for LeastActive {
    fn pick(&self, c: &dyn Candidates, _: u64) -> Option<usize> {
        let mut best: Option<(u32, usize)> = None;
        let mut ties = 0u32;
        for i in (0..c.len()).filter(|&i| c.is_available(i)) {
            let active = c.active(i);
            match best {
                Some((least, _)) if active > least => {}
                Some((least, _)) if active == least => {
                    ties += 1;
                    if fastrand::u32(..=ties) == 0 {
                        best = Some((active, i));
                    }
                }
                _ => {
                    best = Some((active, i));
                    ties = 0;
                }
            }
        }
        best.map(|(_, i)| i)
    }
}

/// Power of two choices: of two random providers, the one with the lower latency estimate
/// ([`PeakEwma`]) times (calls in flight + 1), as Finagle and Linkerd balance.
#[derive(Debug, Default)]
pub struct P2cEwma;

/// Latency assumed for a provider with no sample yet, so that new providers get tried.
const UNKNOWN_LATENCY_NS: u64 = 1_000;

impl Balancer for P2cEwma {
    fn pick(&self, c: &dyn Candidates, _: u64) -> Option<usize> {
        let first = random_available(c)?;
        let n = c.len();
        if n == 1 {
            return Some(first);
        }
        let offset = 1 + fastrand::usize(..n - 1);
        let Some(second) = scan_from(c, (first + offset) % n).filter(|&i| i != first) else {
            return Some(first);
        };
        let score = |i: usize| {
            let latency = match c.latency_ns(i) {
                0 => UNKNOWN_LATENCY_NS,
                l => l,
            };
            latency.saturating_mul(u64::from(c.active(i)) + 1)
        };
        Some(if score(second) < score(first) {
            second
        } else {
            first
        })
    }
}

/// A latency estimate that follows a rise at once and a fall gradually: a sample above the
/// estimate replaces it, one below is averaged in with a weight that grows with the time since
/// the last sample, and the estimate decays toward zero while no call completes (so that a
/// provider that was slow once gets tried again).
///
/// ```
/// use std::time::{Duration, Instant};
/// use rmif_core::balance::PeakEwma;
///
/// let start = Instant::now();
/// let estimate = PeakEwma::new(Duration::from_secs(10));
/// estimate.observe(Duration::from_millis(1), start);
/// estimate.observe(Duration::from_millis(50), start); // a spike counts in full at once
/// assert_eq!(estimate.nanos(start), 50_000_000);
/// // Ten seconds without a call: down to about 1/e of it.
/// let later = estimate.nanos(start + Duration::from_secs(10));
/// assert!((18_000_000..19_000_000).contains(&later), "{later}");
/// ```
#[derive(Debug)]
pub struct PeakEwma {
    decay: Duration,
    /// The estimate in nanoseconds, as `f64` bits (0: no sample yet).
    estimate: AtomicU64,
    /// When the estimate was last updated, in nanoseconds after `origin`.
    updated: AtomicU64,
    origin: Instant,
}

impl PeakEwma {
    /// An estimate without samples, whose memory fades with time constant `decay`.
    pub fn new(decay: Duration) -> Self {
        PeakEwma {
            decay,
            estimate: AtomicU64::new(0),
            updated: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    /// Folds in a call that took `latency`, completed at `now`.
    ///
    /// Lock-free, as it runs once per call: calls completing at the same moment may each
    /// compute from the same previous estimate, and one of their samples is then lost, which
    /// an estimate can afford.
    pub fn observe(&self, latency: Duration, now: Instant) {
        let sample = latency.as_nanos() as f64;
        let previous = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        let estimate = if previous == 0.0 || sample > previous {
            sample
        } else {
            let kept = self.kept_since(self.updated.load(Ordering::Relaxed), now);
            previous * kept + sample * (1.0 - kept)
        };
        self.updated
            .store(self.since_origin(now), Ordering::Relaxed);
        self.estimate.store(estimate.to_bits(), Ordering::Relaxed);
    }

    /// The estimate at `now` in nanoseconds (0 before the first sample).
    pub fn nanos(&self, now: Instant) -> u64 {
        let estimate = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        if estimate == 0.0 {
            return 0;
        }
        let kept = self.kept_since(self.updated.load(Ordering::Relaxed), now);
        ((estimate * kept) as u64).max(1)
    }

    fn since_origin(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// The share of the old estimate kept from `updated` (nanoseconds after the origin) to
    /// `now`.
    fn kept_since(&self, updated: u64, now: Instant) -> f64 {
        let elapsed = self.since_origin(now).saturating_sub(updated) as f64 / 1e9;
        (-elapsed / self.decay.as_secs_f64().max(1e-9)).exp()
    }
}

/// Ketama-style consistent hashing over the request's arguments: each provider owns many
/// points on a ring, so removing one moves only the keys it owned.
#[derive(Debug, Default)]
pub struct ConsistentHash {
    ring: Mutex<Option<Arc<Ring>>>,
}

#[derive(Debug)]
struct Ring {
    revision: u64,
    points: Vec<(u64, usize)>,
}

/// Points each provider owns on the ring.
const POINTS_PER_PROVIDER: u64 = 160;

impl ConsistentHash {
    fn ring(&self, c: &dyn Candidates) -> Arc<Ring> {
        let mut slot = self
            .ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match slot.as_ref() {
            Some(ring) if ring.revision == c.revision() => ring.clone(),
            _ => {
                let mut points = Vec::with_capacity(c.len() * POINTS_PER_PROVIDER as usize);
                for i in 0..c.len() {
                    for replica in 0..POINTS_PER_PROVIDER {
                        points.push((mix(c.identity(i) ^ mix(replica)), i));
                    }
                }
                points.sort_unstable();
                let ring = Arc::new(Ring {
                    revision: c.revision(),
                    points,
                });
                *slot = Some(ring.clone());
                ring
            }
        }
    }
}

impl Balancer for ConsistentHash {
    fn pick(&self, c: &dyn Candidates, request_hash: u64) -> Option<usize> {
        if c.is_empty() {
            return None;
        }
        let ring = self.ring(c);
        let start = ring
            .points
            .partition_point(|(point, _)| *point < request_hash);
        let n = ring.points.len();
        (0..n)
            .map(|k| ring.points[(start + k) % n].1)
            .find(|&i| c.is_available(i))
    }

    fn needs_request_hash(&self) -> bool {
        true
    }
}

/// SplitMix64 finalizer: spreads nearby inputs over the whole ring.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hash of a request body for [`ConsistentHash`].
pub fn request_hash(body: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash)
}

/// A provider identity for [`Candidates::identity`].
pub fn identity_of(addr: &std::net::SocketAddr) -> u64 {
    ids::service_id(&addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        up: Vec<bool>,
        weight: Vec<u32>,
        active: Vec<u32>,
        latency: Vec<u64>,
        revision: u64,
    }

    impl Fake {
        fn new(n: usize) -> Self {
            Fake {
                up: vec![true; n],
                weight: vec![1; n],
                active: vec![0; n],
                latency: vec![0; n],
                revision: n as u64,
            }
        }
    }

    impl Candidates for Fake {
        fn len(&self) -> usize {
            self.up.len()
        }
        fn is_available(&self, i: usize) -> bool {
            self.up[i]
        }
        fn weight(&self, i: usize) -> u32 {
            self.weight[i]
        }
        fn active(&self, i: usize) -> u32 {
            self.active[i]
        }
        fn latency_ns(&self, i: usize) -> u64 {
            self.latency[i]
        }
        fn identity(&self, i: usize) -> u64 {
            i as u64 * 7919
        }
        fn revision(&self) -> u64 {
            self.revision
        }
    }

    fn histogram(b: &dyn Balancer, c: &Fake, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; c.len()];
        for k in 0..picks {
            counts[b.pick(c, request_hash(&k.to_le_bytes())).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn every_policy_skips_unavailable_and_fails_when_none_is_up() {
        let mut c = Fake::new(4);
        c.up[1] = false;
        c.up[2] = false;
        for name in BalancePolicy::NAMES {
            let b = BalancePolicy::from_name(name).unwrap().build();
            let counts = histogram(&*b, &c, 2000);
            assert_eq!((counts[1], counts[2]), (0, 0), "{name}: {counts:?}");
            assert!(counts[0] > 0 || counts[3] > 0, "{name}");
        }
        let none = Fake {
            up: vec![false; 3],
            ..Fake::new(3)
        };
        for name in BalancePolicy::NAMES {
            let b = BalancePolicy::from_name(name).unwrap().build();
            assert_eq!(b.pick(&none, 1), None, "{name}");
            assert_eq!(b.pick(&Fake::new(0), 1), None, "{name}");
        }
    }

    #[test]
    fn round_robin_visits_in_turn() {
        let c = Fake::new(3);
        let b = RoundRobin::default();
        let picks: Vec<_> = (0..6).map(|_| b.pick(&c, 0).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn random_and_weighted_follow_their_distributions() {
        let c = Fake::new(4);
        for count in histogram(&Random, &c, 40_000) {
            assert!((8_000..12_000).contains(&count), "{count}");
        }
        let mut c = Fake::new(2);
        c.weight = vec![1, 3];
        let counts = histogram(&Weighted, &c, 40_000);
        assert!((8_000..12_000).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn smooth_weighted_interleaves_in_proportion_to_weight() {
        let mut c = Fake::new(3);
        c.weight = vec![5, 1, 1];
        let b = SmoothWeighted::default();
        let picks: Vec<_> = (0..7).map(|_| b.pick(&c, 0).unwrap()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
        let counts = histogram(&b, &c, 7_000);
        assert_eq!(counts, [5_000, 1_000, 1_000]);

        // An unavailable provider's share goes to the others, still in proportion.
        c.up[0] = false;
        let counts = histogram(&SmoothWeighted::default(), &c, 1_000);
        assert_eq!(counts, [0, 500, 500]);
    }

    #[test]
    fn least_active_prefers_the_idle_provider() {
        let mut c = Fake::new(3);
        c.active = vec![5, 1, 3];
        assert_eq!(histogram(&LeastActive, &c, 100)[1], 100);
    }

    #[test]
    fn p2c_avoids_the_slow_provider() {
        let mut c = Fake::new(2);
        c.latency = vec![50_000_000, 100_000];
        assert_eq!(histogram(&P2cEwma, &c, 100)[1], 100);
    }

    #[test]
    fn p2c_weighs_latency_by_calls_in_flight() {
        // Twice as slow but idle beats fast with four calls waiting.
        let mut c = Fake::new(2);
        c.latency = vec![2_000_000, 1_000_000];
        c.active = vec![0, 4];
        assert_eq!(histogram(&P2cEwma, &c, 100)[0], 100);
        // Of four providers, a slow one wins only when both providers drawn are slow: one pair
        // in six.
        let mut c = Fake::new(4);
        c.latency = vec![1_000_000, 1_000_000, 9_000_000, 9_000_000];
        let counts = histogram(&P2cEwma, &c, 60_000);
        let slow = counts[2] + counts[3];
        assert!((7_000..13_000).contains(&slow), "{counts:?}");
    }

    #[test]
    fn peak_ewma_takes_a_spike_at_once_and_forgets_it_gradually() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let e = PeakEwma::new(Duration::from_secs(1));
        assert_eq!(e.nanos(start), 0);
        e.observe(Duration::from_millis(1), at(0));
        e.observe(Duration::from_millis(40), at(1));
        assert_eq!(e.nanos(at(1)), 40_000_000);
        // Fast samples pull it down, more so the longer after the last sample they come.
        e.observe(Duration::from_millis(1), at(11));
        let soon = e.nanos(at(11));
        assert!((39_000_000..40_000_000).contains(&soon), "{soon}");
        e.observe(Duration::from_millis(1), at(2011));
        let later = e.nanos(at(2011));
        assert!((5_000_000..7_000_000).contains(&later), "{later}");
        // Idle, it decays toward zero, but stays above it.
        assert!(e.nanos(at(60_000)) >= 1);
        assert!(e.nanos(at(20_011)) < 1_000);
    }

    #[test]
    fn consistent_hash_is_stable_and_moves_few_keys() {
        let c = Fake::new(5);
        let b = ConsistentHash::default();
        let keys: Vec<u64> = (0..2000u64)
            .map(|k| request_hash(&k.to_le_bytes()))
            .collect();
        let before: Vec<_> = keys.iter().map(|&k| b.pick(&c, k).unwrap()).collect();
        let again: Vec<_> = keys.iter().map(|&k| b.pick(&c, k).unwrap()).collect();
        assert_eq!(before, again);

        let mut down = Fake::new(5);
        down.up[2] = false;
        let after: Vec<_> = keys.iter().map(|&k| b.pick(&down, k).unwrap()).collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 2 {
                assert_eq!(a, b, "a key not owned by the removed provider moved");
            }
        }
        // A sixth provider joins: about a sixth of the keys move, all of them to it.
        let joined = Fake::new(6);
        let grown: Vec<_> = keys.iter().map(|&k| b.pick(&joined, k).unwrap()).collect();
        let moved = before.iter().zip(&grown).filter(|(b, g)| b != g).count();
        assert!(
            (keys.len() / 6 / 2..keys.len() / 6 * 2).contains(&moved),
            "{moved} of {} keys moved",
            keys.len()
        );
        for (b, g) in before.iter().zip(&grown) {
            assert!(b == g || *g == 5, "a key moved between two old providers");
        }

        let spread = histogram(&ConsistentHash::default(), &c, 10_000);
        assert!(spread.iter().all(|&n| n > 800), "{spread:?}");
    }
}
