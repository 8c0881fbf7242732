//! The client API's wire format is stable: requests and answers encoded by the first release
//! (bytes in `data/wire-v1.txt`, made by that release) decode to the same values here and encode
//! to the same bytes, in both body formats. A member and a client of different versions keep
//! understanding each other.

use std::collections::HashMap;

use rmif_core::Serialization;
use rmif_registry::api::*;
use rmif_registry::op::SessionCall;
use rmif_registry::{ChangeKind, Op, OpResult, RegistryError, Stat};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn fixtures() -> HashMap<&'static str, &'static str> {
    include_str!("data/wire-v1.txt")
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

/// Checks `value` against the fixture `name` in both formats.
fn same_on_the_wire<T>(fixtures: &HashMap<&str, &str>, name: &str, value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for format in Serialization::ALL {
        let key = format!("wire.{}.{name}", format.name());
        let stored = bytes(
            fixtures
                .get(key.as_str())
                .unwrap_or_else(|| panic!("no {key}")),
        );
        let decoded: T = format
            .decode(&stored)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(&decoded, value, "{key}");
        let mut encoded = bytes::BytesMut::new();
        format.encode(value, &mut encoded).expect("encode");
        assert_eq!(&encoded[..], &stored[..], "{key}: the encoding changed");
    }
}

fn stat() -> Stat {
    Stat {
        czxid: 1,
        mzxid: 2,
        pzxid: 3,
        ctime_ms: 4,
        mtime_ms: 5,
        version: 6,
        cversion: 7,
        ephemeral_owner: 8,
        data_length: 9,
        num_children: 10,
    }
}

fn ops() -> Vec<Op> {
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

#[test]
fn requests_keep_their_encoding() {
    let f = fixtures();
    let call = Some(SessionCall {
        session: 5,
        request_id: 9,
    });
    // Requests travel as argument tuples.
    same_on_the_wire(
        &f,
        "create_request",
        &(CreateRequest {
            path: "/p".into(),
            data: b"d".to_vec(),
            ephemeral: true,
            sequential: true,
            session: call,
        },),
    );
    same_on_the_wire(
        &f,
        "set_request",
        &(SetRequest {
            path: "/p".into(),
            data: b"d".to_vec(),
            version: Some(1),
            session: None,
        },),
    );
    same_on_the_wire(
        &f,
        "delete_request",
        &(DeleteRequest {
            path: "/p".into(),
            version: Some(1),
            session: call,
        },),
    );
    same_on_the_wire(
        &f,
        "multi_request",
        &(MultiRequest {
            ops: ops(),
            session: call,
        },),
    );
    same_on_the_wire(
        &f,
        "read_request",
        &(ReadRequest {
            path: "/p".into(),
            stale: true,
            min_zxid: 4,
        },),
    );
    same_on_the_wire(
        &f,
        "watch_request",
        &(WatchRequest {
            path: "/p".into(),
            mode: WatchMode::Recursive,
            since_zxid: Some(3),
            min_zxid: 4,
            with_data: false,
            with_state: false,
        },),
    );
    same_on_the_wire(&f, "open_session", &(OpenSessionRequest { timeout_ms: 5 },));
    same_on_the_wire(
        &f,
        "attach_session",
        &(AttachSessionRequest {
            session: 5,
            secret: 6,
        },),
    );
    same_on_the_wire(
        &f,
        "session_request",
        &(SessionRequest {
            session: 5,
            request_id: 6,
        },),
    );
}

#[test]
fn answers_keep_their_encoding() {
    let f = fixtures();
    let stat = stat();
    same_on_the_wire(
        &f,
        "created",
        &Created {
            path: "/p".into(),
            stat,
            zxid: 3,
        },
    );
    same_on_the_wire(
        &f,
        "written",
        &Written {
            stat: Some(stat),
            zxid: 3,
        },
    );
    same_on_the_wire(
        &f,
        "node_data",
        &NodeData {
            data: b"d".to_vec(),
            stat,
            zxid: 3,
        },
    );
    same_on_the_wire(
        &f,
        "child_list",
        &ChildList {
            children: vec!["a".into(), "b".into()],
            stat,
            zxid: 3,
        },
    );
    same_on_the_wire(&f, "node_stat", &NodeStat { stat, zxid: 3 });
    same_on_the_wire(
        &f,
        "multi_response",
        &MultiResponse {
            results: vec![
                OpResult::Created {
                    path: "/a".into(),
                    stat,
                },
                OpResult::Set { stat },
                OpResult::Deleted,
                OpResult::Checked,
            ],
            zxid: 3,
        },
    );
    same_on_the_wire(&f, "synced", &Synced { zxid: 3 });
    same_on_the_wire(
        &f,
        "grant",
        &SessionGrant {
            session: 1,
            secret: 2,
            timeout_ms: 3,
            zxid: 4,
        },
    );
    same_on_the_wire(&f, "keepalive_ack", &KeepAliveAck { zxid: 3 });
    same_on_the_wire(
        &f,
        "member_status",
        &MemberStatus {
            id: 1,
            client_addr: "c".into(),
            peer_addr: "p".into(),
            role: "leader".into(),
            term: 2,
            leader: 1,
            commit: 3,
            applied: 3,
            snapshot: 0,
            nodes: 4,
            sessions: 5,
            digest: 6,
            members: vec![(1, "p".into())],
        },
    );
    let event = |kind, path: &str| WatchEvent {
        kind,
        path: path.into(),
        data: None,
    };
    same_on_the_wire(
        &f,
        "watch_message",
        &WatchMessage {
            zxid: 3,
            events: vec![
                event(ChangeKind::Created, "/a"),
                event(ChangeKind::Deleted, "/b"),
                event(ChangeKind::DataChanged, "/c"),
                event(ChangeKind::ChildrenChanged, "/d"),
            ],
            resync: Some(vec![NodeSnapshot {
                path: "/a".into(),
                stat,
                data: b"x".to_vec(),
            }]),
        },
    );
}

#[test]
fn errors_keep_their_encoding() {
    let f = fixtures();
    let errors = [
        RegistryError::NodeExists { path: "/p".into() },
        RegistryError::NoNode { path: "/p".into() },
        RegistryError::BadVersion {
            path: "/p".into(),
            expected: 1,
            actual: 2,
        },
        RegistryError::NotEmpty { path: "/p".into() },
        RegistryError::EphemeralParent { path: "/p".into() },
        RegistryError::InvalidPath {
            path: "/p".into(),
            reason: "r".into(),
        },
        RegistryError::TooLarge {
            path: "/p".into(),
            size: 1,
            max: 2,
        },
        RegistryError::NotAllowed {
            path: "/p".into(),
            reason: "r".into(),
        },
        RegistryError::SessionExpired { session: 5 },
        RegistryError::SessionRejected {
            session: 5,
            reason: "r".into(),
        },
        RegistryError::NoQuorum("q".into()),
        RegistryError::Indeterminate("i".into()),
        RegistryError::WatchOverrun { last_zxid: 3 },
        RegistryError::BadRequest("b".into()),
        RegistryError::Rpc(rmif_core::Error::NoProvider {
            service: "s".into(),
            detail: "d".into(),
        }),
    ];
    for (i, error) in errors.iter().enumerate() {
        same_on_the_wire(&f, &format!("error{i}"), error);
    }
}

/// What a hostile or outdated client could send in a multi: a nested multi, or a session action
/// that only members may log.
#[derive(Serialize)]
enum NotAClientOp {
    Multi(Vec<u8>),
    ExpireSessions { sessions: Vec<u64> },
    OpenSession { timeout_ms: u64 },
}

#[derive(Serialize)]
struct HostileMulti {
    ops: Vec<NotAClientOp>,
    session: Option<SessionCall>,
}

#[test]
fn a_multi_cannot_carry_anything_but_client_operations() {
    for op in [
        NotAClientOp::Multi(Vec::new()),
        NotAClientOp::ExpireSessions { sessions: vec![1] },
        NotAClientOp::OpenSession { timeout_ms: 5 },
    ] {
        let request = (HostileMulti {
            ops: vec![op],
            session: None,
        },);
        for format in Serialization::ALL {
            let mut body = bytes::BytesMut::new();
            format.encode(&request, &mut body).expect("encode");
            let decoded = format.decode::<(MultiRequest,)>(&body);
            assert!(
                decoded.is_err(),
                "{}: decoded as {decoded:?}",
                format.name()
            );
        }
    }
}
