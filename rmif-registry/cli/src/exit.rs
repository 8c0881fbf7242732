//! The `rmif` command's exit codes: what a script can tell from them without reading a message.
//! docs/OPERATIONS.md ("Exit codes") lists them for operators.
//!
//! 10–29: the operation did not happen (10–19: the registry refused it and will again; 20–29: the
//! cluster could not take it now, and it may succeed later). 30: it may have happened. 1: a
//! failure of another kind (its outcome unknown too). 2: a usage error.

use rmif_registry::ErrorKind;

/// A failure of no other kind; the operation may have happened.
pub const OTHER: u8 = 1;
/// The command line is wrong (clap's code, also for an unusable `--servers` address).
pub const USAGE: u8 = 2;
/// No such node (for `create`, no such parent).
pub const NO_NODE: u8 = 10;
/// `create` of a node that exists.
pub const NODE_EXISTS: u8 = 11;
/// `--version` did not match the node's.
pub const BAD_VERSION: u8 = 12;
/// `delete` of a node that has children.
pub const NOT_EMPTY: u8 = 13;
/// A request that will fail again as it is: a malformed path, data too large, an operation not
/// allowed on the node, a child of an ephemeral node.
pub const INVALID: u8 = 14;
/// The session expired or was refused.
pub const SESSION: u8 = 15;
/// No quorum (no leader, or a member refused before applying): not performed; may succeed later.
/// `rmif status`: no reachable member knows a leader.
pub const NO_QUORUM: u8 = 20;
/// No member could be contacted: not performed. `rmif status`: no member answered.
pub const UNREACHABLE: u8 = 21;
/// `rmif status` only: the cluster has a leader, but a member is unreachable or knows no leader.
pub const DEGRADED: u8 = 22;
/// `rmif lock --wait`: the lock was not granted in time, and the command did not run.
pub const NOT_GRANTED: u8 = 16;
/// `rmif elect` / `rmif lock`: the leadership or the lock was lost (the session expired, or was
/// suspended long enough that it may have), so the command was stopped, or never started.
pub const LOST: u8 = 17;
/// The operation may or may not have happened (outcome unknown, timed out, connection lost
/// after the request was sent).
pub const OUTCOME_UNKNOWN: u8 = 30;

/// The exit code of a command that failed with an error of `kind`.
pub fn for_kind(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NoNode => NO_NODE,
        ErrorKind::NodeExists => NODE_EXISTS,
        ErrorKind::BadVersion => BAD_VERSION,
        ErrorKind::NotEmpty => NOT_EMPTY,
        ErrorKind::Invalid => INVALID,
        ErrorKind::Session => SESSION,
        ErrorKind::NoQuorum => NO_QUORUM,
        ErrorKind::Unreachable => UNREACHABLE,
        ErrorKind::OutcomeUnknown => OUTCOME_UNKNOWN,
        _ => OTHER,
    }
}

#[cfg(test)]
mod tests {
    use rmif_registry::Outcome;

    use super::*;

    const KINDS: [ErrorKind; 10] = [
        ErrorKind::NoNode,
        ErrorKind::NodeExists,
        ErrorKind::BadVersion,
        ErrorKind::NotEmpty,
        ErrorKind::Invalid,
        ErrorKind::Session,
        ErrorKind::NoQuorum,
        ErrorKind::Unreachable,
        ErrorKind::OutcomeUnknown,
        ErrorKind::Other,
    ];

    #[test]
    fn each_kind_has_its_own_code() {
        let codes: std::collections::BTreeSet<u8> = KINDS.iter().map(|k| for_kind(*k)).collect();
        assert_eq!(codes.len(), KINDS.len());
        assert!(!codes.contains(&0) && !codes.contains(&USAGE) && !codes.contains(&DEGRADED));
    }

    #[test]
    fn the_code_range_says_whether_it_happened() {
        for kind in KINDS {
            let code = for_kind(kind);
            match kind.outcome() {
                Outcome::NotApplied => assert!((10..30).contains(&code), "{kind:?}: {code}"),
                Outcome::Unknown => assert!(code == OUTCOME_UNKNOWN || code == OTHER, "{kind:?}"),
            }
        }
        assert_eq!(for_kind(ErrorKind::OutcomeUnknown), 30);
    }
}
