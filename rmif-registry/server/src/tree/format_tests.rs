//! The log's and the snapshot's formats are stable: entries and snapshots written by the first
//! release (bytes in `testdata/format-v1.txt`, made by that release) read back to the same
//! commands and tree, and encode to the same bytes again.

use std::collections::HashMap;

use rmif_registry::Op;
use rmif_registry::op::SessionCall;

use super::{Action, Command, Proposer, SessionOwner, Tree};

fn fixtures() -> HashMap<&'static str, &'static str> {
    include_str!("testdata/format-v1.txt")
        .lines()
        .filter_map(|line| line.split_once(' '))
        .collect()
}

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn owner() -> SessionOwner {
    SessionOwner {
        member: 2,
        connection: "127.0.0.1:4242".into(),
    }
}

fn client_ops() -> Vec<Op> {
    vec![
        Op::Create {
            path: "/a".into(),
            data: b"x".to_vec(),
            ephemeral: false,
            sequential: false,
        },
        Op::Set {
            path: "/a".into(),
            data: b"yz".to_vec(),
            version: Some(0),
        },
        Op::Delete {
            path: "/a".into(),
            version: None,
        },
        Op::Check {
            path: "/".into(),
            version: 3,
        },
    ]
}

/// The commands the fixture file holds, as this version builds them.
fn expected_commands() -> Vec<(&'static str, Command)> {
    let call = Some(SessionCall {
        session: 5,
        request_id: 9,
    });
    let command = |seq: u64, session, action| Command {
        proposer: Proposer {
            member: 1,
            incarnation: 0xdead_beef,
            seq,
        },
        time_ms: 1_700_000_000_000 + seq,
        session,
        action,
    };
    let mut commands: Vec<(&'static str, Command)> = ["log.op0", "log.op1", "log.op2", "log.op3"]
        .into_iter()
        .zip(client_ops())
        .enumerate()
        .map(|(seq, (name, op))| (name, command(seq as u64, call, Action::from(op))))
        .collect();
    commands.extend([
        ("log.multi", command(10, None, Action::Multi(client_ops()))),
        (
            "log.open",
            command(
                11,
                None,
                Action::OpenSession {
                    timeout_ms: 5000,
                    secret: 77,
                    owner: owner(),
                },
            ),
        ),
        (
            "log.attach",
            command(
                12,
                None,
                Action::AttachSession {
                    session: 5,
                    secret: 77,
                    owner: owner(),
                },
            ),
        ),
        (
            "log.close",
            command(13, call, Action::CloseSession { session: 5 }),
        ),
        (
            "log.expire",
            command(
                14,
                None,
                Action::ExpireSessions {
                    sessions: vec![5, 6],
                },
            ),
        ),
    ]);
    commands
}

#[test]
fn log_entries_of_the_first_release_read_back_and_encode_the_same() {
    let fixtures = fixtures();
    for (name, expected) in expected_commands() {
        let stored = bytes(fixtures[name]);
        let decoded = Command::decode(&stored).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}");
        assert_eq!(expected.encode(), stored, "{name}: the encoding changed");
    }
}

#[test]
fn a_snapshot_of_the_first_release_restores_the_same_tree() {
    let fixtures = fixtures();
    let stored = bytes(fixtures["snapshot.tree"]);
    let tree = Tree::from_snapshot(&stored).expect("the snapshot reads back");
    assert_eq!(
        tree.digest().to_string(),
        fixtures["snapshot.digest"],
        "the state differs"
    );
    assert_eq!(tree.last_zxid().to_string(), fixtures["snapshot.last_zxid"]);
    assert_eq!(tree.to_snapshot(), stored, "the snapshot encoding changed");
    // The surviving session remembers outcomes of every kind, errors included.
    let session = tree.session(1).expect("session 1 is in the snapshot");
    assert!(
        tree.session(9).is_none(),
        "session 9 expired before the snapshot"
    );
    assert_eq!(session.secret, 77);
    // Its last request, deleting /app, failed: /app still holds its ephemeral child.
    assert_eq!(tree.get("/app").expect("/app").0, b"v3");
    assert_eq!(tree.children("/app").expect("children").0, ["e-0000000000"]);
}

#[test]
fn an_undecodable_entry_is_an_error_not_a_panic() {
    for garbage in [&b""[..], b"\x94\x93", b"\xc1\xc1\xc1", &[0x94; 64]] {
        assert!(Command::decode(garbage).is_err(), "{garbage:?}");
    }
}
