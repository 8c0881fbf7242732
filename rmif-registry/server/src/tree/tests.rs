use super::*;
use rmif_registry::node::MAX_DATA_LEN;
use rmif_registry::op::SessionCall;

struct Harness {
    tree: Tree,
    zxid: u64,
}

impl Harness {
    fn new() -> Self {
        Harness {
            tree: Tree::new(),
            zxid: 0,
        }
    }

    fn apply_as(&mut self, session: Option<(u64, u64)>, action: impl Into<Action>) -> Applied {
        self.zxid += 1;
        let command = Command {
            proposer: Proposer {
                member: 1,
                incarnation: 0,
                seq: self.zxid,
            },
            time_ms: 1_000 + self.zxid,
            session: session.map(|(session, request_id)| SessionCall {
                session,
                request_id,
            }),
            action: action.into(),
        };
        let applied = self.tree.apply(self.zxid, &command);
        // Every test doubles as a check of the running digest, through whatever it applies.
        assert_eq!(
            self.tree.nodes.digest(),
            self.tree.nodes.digest_from_scratch(),
            "the running digest drifted at zxid {}",
            self.zxid
        );
        applied
    }

    fn apply(&mut self, action: impl Into<Action>) -> Outcome {
        self.apply_as(None, action).outcome
    }

    fn open_session(&mut self) -> u64 {
        let owner = SessionOwner {
            member: 1,
            connection: "127.0.0.1:5000".into(),
        };
        match self.apply(Action::OpenSession {
            timeout_ms: 5000,
            secret: 7,
            owner,
        }) {
            Ok(ActionResult::SessionOpened { session, .. }) => session,
            other => panic!("{other:?}"),
        }
    }
}

fn create(path: &str, data: &[u8]) -> Op {
    Op::Create {
        path: path.into(),
        data: data.to_vec(),
        ephemeral: false,
        sequential: false,
    }
}

fn created_path(outcome: Outcome) -> String {
    match outcome {
        Ok(ActionResult::Created { path, .. }) => path,
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_get_set_delete_with_stats() {
    let mut h = Harness::new();
    assert_eq!(created_path(h.apply(create("/a", b"one"))), "/a");
    let (data, stat) = h.tree.get("/a").unwrap();
    assert_eq!(data, b"one");
    assert_eq!(
        (stat.czxid, stat.mzxid, stat.version, stat.data_length),
        (1, 1, 0, 3)
    );
    assert_eq!(stat.ctime_ms, 1_001);

    let root = h.tree.stat("/").unwrap();
    assert_eq!((root.cversion, root.num_children, root.pzxid), (1, 1, 1));

    match h.apply(Op::Set {
        path: "/a".into(),
        data: b"two".to_vec(),
        version: Some(0),
    }) {
        Ok(ActionResult::Set { stat }) => {
            assert_eq!((stat.version, stat.mzxid, stat.czxid), (1, 2, 1))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.apply(Op::Set {
            path: "/a".into(),
            data: vec![],
            version: Some(0)
        }),
        Err(RegistryError::BadVersion {
            path: "/a".into(),
            expected: 0,
            actual: 1
        })
    );
    assert_eq!(
        h.apply(Op::Delete {
            path: "/a".into(),
            version: Some(5)
        }),
        Err(RegistryError::BadVersion {
            path: "/a".into(),
            expected: 5,
            actual: 1
        })
    );
    assert_eq!(
        h.apply(Op::Delete {
            path: "/a".into(),
            version: Some(1)
        }),
        Ok(ActionResult::Deleted)
    );
    assert_eq!(
        h.tree.get("/a"),
        Err(RegistryError::NoNode { path: "/a".into() })
    );
    assert_eq!(h.tree.stat("/").unwrap().num_children, 0);
}

#[test]
fn create_rules() {
    let mut h = Harness::new();
    assert_eq!(
        h.apply(create("/a/b", b"")),
        Err(RegistryError::NoNode { path: "/a".into() })
    );
    h.apply(create("/a", b"")).unwrap();
    assert_eq!(
        h.apply(create("/a", b"")),
        Err(RegistryError::NodeExists { path: "/a".into() })
    );
    assert_eq!(
        h.apply(create("/", b"")),
        Err(RegistryError::NodeExists { path: "/".into() })
    );
    assert!(matches!(
        h.apply(create("a", b"")),
        Err(RegistryError::InvalidPath { .. })
    ));
    assert!(matches!(
        h.apply(create("/big", &vec![0; MAX_DATA_LEN + 1])),
        Err(RegistryError::TooLarge { size, .. }) if size == MAX_DATA_LEN + 1
    ));
    h.apply(create("/exact", &vec![0; MAX_DATA_LEN])).unwrap();
}

#[test]
fn delete_rules() {
    let mut h = Harness::new();
    h.apply(create("/a", b"")).unwrap();
    h.apply(create("/a/b", b"")).unwrap();
    assert_eq!(
        h.apply(Op::Delete {
            path: "/a".into(),
            version: None
        }),
        Err(RegistryError::NotEmpty { path: "/a".into() })
    );
    assert!(matches!(
        h.apply(Op::Delete {
            path: "/".into(),
            version: None
        }),
        Err(RegistryError::NotAllowed { .. })
    ));
    assert_eq!(
        h.apply(Op::Delete {
            path: "/zz".into(),
            version: None
        }),
        Err(RegistryError::NoNode { path: "/zz".into() })
    );
}

#[test]
fn sequential_names_count_per_parent_with_ten_digits() {
    let mut h = Harness::new();
    h.apply(create("/q", b"")).unwrap();
    h.apply(create("/r", b"")).unwrap();
    let seq = |path: &str| Op::Create {
        path: path.into(),
        data: vec![],
        ephemeral: false,
        sequential: true,
    };
    assert_eq!(created_path(h.apply(seq("/q/job-"))), "/q/job-0000000000");
    assert_eq!(created_path(h.apply(seq("/q/job-"))), "/q/job-0000000001");
    assert_eq!(created_path(h.apply(seq("/r/x"))), "/r/x0000000000");
    // Deleting does not reuse numbers.
    h.apply(Op::Delete {
        path: "/q/job-0000000001".into(),
        version: None,
    })
    .unwrap();
    assert_eq!(created_path(h.apply(seq("/q/job-"))), "/q/job-0000000002");
    assert_eq!(
        h.tree.children("/q").unwrap().0,
        vec!["job-0000000000", "job-0000000002"]
    );
}

#[test]
fn multi_applies_all_or_nothing() {
    let mut h = Harness::new();
    h.apply(create("/a", b"v0")).unwrap();
    let before = h.tree.digest();
    let failing = Action::Multi(vec![
        create("/b", b""),
        Op::Set {
            path: "/a".into(),
            data: b"v1".to_vec(),
            version: Some(0),
        },
        Op::Create {
            path: "/b/s-".into(),
            data: vec![],
            ephemeral: false,
            sequential: true,
        },
        Op::Delete {
            path: "/a".into(),
            version: Some(0),
        }, // version is 1 by now
    ]);
    let applied = h.apply_as(None, failing);
    assert_eq!(
        applied.outcome,
        Err(RegistryError::BadVersion {
            path: "/a".into(),
            expected: 0,
            actual: 1
        })
    );
    assert!(applied.changes.is_empty());
    assert_eq!(h.tree.digest(), before, "a failed multi leaves no trace");
    assert_eq!(h.tree.get("/a").unwrap().0, b"v0");

    let ok = h.apply(Action::Multi(vec![
        Op::Check {
            path: "/a".into(),
            version: 0,
        },
        create("/b", b""),
        Op::Set {
            path: "/a".into(),
            data: b"v1".to_vec(),
            version: Some(0),
        },
    ]));
    assert!(
        matches!(ok, Ok(ActionResult::Multi(ref r)) if r.len() == 3),
        "{ok:?}"
    );
    assert_eq!(h.tree.get("/a").unwrap().0, b"v1");
    assert!(h.tree.get("/b").is_ok());
    // A multi holds client operations only: nesting one, or a session action, cannot be
    // expressed (rmif-registry's wire tests show such bytes are refused at decoding).
}

#[test]
fn ephemeral_nodes_live_exactly_as_long_as_their_session() {
    let mut h = Harness::new();
    let session = h.open_session();
    h.apply(create("/svc", b"")).unwrap();
    let ephemeral = |path: &str| Op::Create {
        path: path.into(),
        data: vec![],
        ephemeral: true,
        sequential: false,
    };
    assert!(
        matches!(
            h.apply(ephemeral("/svc/a")),
            Err(RegistryError::BadRequest(_))
        ),
        "needs a session"
    );
    let made = h.apply_as(Some((session, 1)), ephemeral("/svc/a"));
    assert_eq!(created_path(made.outcome), "/svc/a");
    assert_eq!(h.tree.stat("/svc/a").unwrap().ephemeral_owner, session);
    assert_eq!(
        h.apply_as(Some((session, 2)), create("/svc/a/child", b""))
            .outcome,
        Err(RegistryError::EphemeralParent {
            path: "/svc/a".into()
        })
    );
    let expired = h.apply(Action::ExpireSessions {
        sessions: vec![session, 999],
    });
    assert_eq!(
        expired,
        Ok(ActionResult::Expired {
            sessions: vec![session]
        })
    );
    assert!(h.tree.get("/svc/a").is_err());
    assert!(h.tree.session(session).is_none());
    assert_eq!(
        h.apply_as(Some((session, 3)), create("/svc/b", b""))
            .outcome,
        Err(RegistryError::SessionExpired { session })
    );
}

#[test]
fn closing_a_session_reports_its_deleted_nodes_and_changes() {
    let mut h = Harness::new();
    let session = h.open_session();
    for name in ["/e1", "/e2"] {
        h.apply_as(
            Some((session, h.zxid + 1)),
            Op::Create {
                path: name.into(),
                data: vec![],
                ephemeral: true,
                sequential: false,
            },
        )
        .outcome
        .unwrap();
    }
    let closed = h.apply_as(None, Action::CloseSession { session });
    assert_eq!(
        closed.outcome,
        Ok(ActionResult::SessionClosed {
            deleted: vec!["/e1".into(), "/e2".into()]
        })
    );
    let deleted: Vec<_> = closed
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Deleted)
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(deleted, ["/e1", "/e2"]);
}

#[test]
fn a_retried_request_is_answered_from_memory_not_applied_twice() {
    let mut h = Harness::new();
    let session = h.open_session();
    h.apply(create("/q", b"")).unwrap();
    let seq = Op::Create {
        path: "/q/n-".into(),
        data: vec![],
        ephemeral: false,
        sequential: true,
    };
    let first = h.apply_as(Some((session, 10)), seq.clone());
    let retry = h.apply_as(Some((session, 10)), seq.clone());
    assert_eq!(first.outcome, retry.outcome);
    assert!(retry.changes.is_empty());
    assert_eq!(h.tree.children("/q").unwrap().0.len(), 1);
    let next = h.apply_as(Some((session, 11)), seq);
    assert_eq!(created_path(next.outcome), "/q/n-0000000001");
}

#[test]
fn snapshots_restore_the_same_state() {
    let mut h = Harness::new();
    let session = h.open_session();
    h.apply(create("/a", b"x")).unwrap();
    h.apply_as(
        Some((session, 1)),
        Op::Create {
            path: "/a/e".into(),
            data: vec![1],
            ephemeral: true,
            sequential: true,
        },
    )
    .outcome
    .unwrap();
    let restored = Tree::from_snapshot(&h.tree.to_snapshot()).unwrap();
    assert_eq!(restored, h.tree);
    assert_eq!(restored.digest(), h.tree.digest());
    assert!(Tree::from_snapshot(b"garbage").is_err());
}

#[test]
fn a_snapshot_lists_nodes_in_byte_order_of_their_paths_and_sessions_by_id() {
    let mut h = Harness::new();
    let sessions = [h.open_session(), h.open_session(), h.open_session()];
    // Created out of order, with names where a walk of the tree (parent, then its children)
    // and the byte order of whole paths disagree: '-' and '.' sort before '/'.
    for path in [
        "/b", "/a", "/a/z", "/a-c", "/a/b", "/a.b", "/A", "/a/b/c", "/é",
    ] {
        h.apply(create(path, b"")).unwrap();
    }
    let image: Image = rmp_serde::from_slice(&h.tree.to_snapshot()).unwrap();
    let paths: Vec<&str> = image.nodes.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/", "/A", "/a", "/a-c", "/a.b", "/a/b", "/a/b/c", "/a/z", "/b", "/é"
        ]
    );
    let ids: Vec<u64> = image.sessions.iter().map(|session| session.id).collect();
    assert_eq!(ids, sessions);
    // Leaves and parents alike read back as they were.
    let restored = Tree::from_snapshot(&h.tree.to_snapshot()).unwrap();
    assert_eq!(restored, h.tree);
    assert_eq!(restored.children("/a").unwrap().0, ["b", "z"]);
}

#[test]
fn changes_name_every_affected_node() {
    let mut h = Harness::new();
    let created = h.apply_as(None, create("/a", b"v0"));
    assert_eq!(
        created.changes,
        vec![
            Change {
                kind: ChangeKind::Created,
                path: "/a".into(),
                data: Some(bytes::Bytes::from_static(b"v0")),
            },
            Change {
                kind: ChangeKind::ChildrenChanged,
                path: "/".into(),
                data: None,
            },
        ]
    );
    let set = h.apply_as(
        None,
        Op::Set {
            path: "/a".into(),
            data: b"v1".to_vec(),
            version: None,
        },
    );
    assert_eq!(
        set.changes,
        vec![Change {
            kind: ChangeKind::DataChanged,
            path: "/a".into(),
            data: Some(bytes::Bytes::from_static(b"v1")),
        }]
    );
    let deleted = h.apply_as(
        None,
        Op::Delete {
            path: "/a".into(),
            version: None,
        },
    );
    assert_eq!(
        deleted.changes,
        vec![
            Change {
                kind: ChangeKind::Deleted,
                path: "/a".into(),
                data: None,
            },
            Change {
                kind: ChangeKind::ChildrenChanged,
                path: "/".into(),
                data: None,
            },
        ]
    );
}

#[test]
fn only_the_secret_holder_moves_a_session() {
    let mut h = Harness::new();
    let session = h.open_session();
    let elsewhere = SessionOwner {
        member: 2,
        connection: "127.0.0.1:6000".into(),
    };
    assert!(matches!(
        h.apply(Action::AttachSession {
            session,
            secret: 8,
            owner: elsewhere.clone()
        }),
        Err(RegistryError::SessionRejected { .. })
    ));
    assert_eq!(
        h.apply(Action::AttachSession {
            session,
            secret: 7,
            owner: elsewhere.clone()
        }),
        Ok(ActionResult::SessionAttached {
            session,
            timeout_ms: 5000
        })
    );
    assert_eq!(h.tree.session(session).unwrap().owner, elsewhere);
    assert_eq!(
        h.apply(Action::AttachSession {
            session: 999,
            secret: 7,
            owner: elsewhere
        }),
        Err(RegistryError::SessionExpired { session: 999 })
    );
}

#[test]
fn the_digest_tells_states_apart_and_forgets_undone_changes() {
    let mut h = Harness::new();
    let empty = h.tree.digest();
    h.apply(create("/a", b"one")).unwrap();
    let with_a = h.tree.digest();
    assert_ne!(with_a, empty);
    h.apply(Op::Set {
        path: "/a".into(),
        data: b"two".to_vec(),
        version: None,
    })
    .unwrap();
    assert_ne!(h.tree.digest(), with_a, "a data change must show");
    h.apply(Op::Delete {
        path: "/a".into(),
        version: None,
    })
    .unwrap();
    // The root's stat (cversion, pzxid) still records that a child came and went.
    assert_ne!(h.tree.digest(), empty);

    // Two members that applied the same entries agree, whatever their map's order.
    let mut other = Harness::new();
    other.apply(create("/a", b"one")).unwrap();
    other
        .apply(Op::Set {
            path: "/a".into(),
            data: b"two".to_vec(),
            version: None,
        })
        .unwrap();
    other
        .apply(Op::Delete {
            path: "/a".into(),
            version: None,
        })
        .unwrap();
    assert_eq!(other.tree.digest(), h.tree.digest());
}

#[test]
fn a_clone_keeps_the_state_it_was_taken_at_while_the_tree_changes() {
    let mut h = Harness::new();
    h.apply(create("/parent", b"p")).unwrap();
    for i in 0..200 {
        h.apply(create(&format!("/parent/c{i}"), b"v")).unwrap();
    }
    let image_then = h.tree.to_snapshot();
    let taken = h.tree.clone();
    // What a snapshot thread serializes while the driver goes on applying.
    h.apply(create("/parent/late", b"")).unwrap();
    h.apply(Op::Set {
        path: "/parent/c7".into(),
        data: b"changed".to_vec(),
        version: None,
    })
    .unwrap();
    h.apply(Op::Delete {
        path: "/parent/c8".into(),
        version: None,
    })
    .unwrap();
    assert_eq!(taken.to_snapshot(), image_then);
    assert_eq!(taken.children("/parent").unwrap().0.len(), 200);
    assert_eq!(h.tree.children("/parent").unwrap().0.len(), 200);
    assert_eq!(h.tree.get("/parent/c7").unwrap().0, b"changed");
    assert_eq!(taken.get("/parent/c7").unwrap().0, b"v");
}

#[test]
fn a_clone_keeps_its_sessions_while_the_tree_expires_them() {
    let mut h = Harness::new();
    let session = h.open_session();
    h.apply(create("/svc", b"")).unwrap();
    let made = h.apply_as(
        Some((session, 1)),
        Op::Create {
            path: "/svc/a".into(),
            data: vec![],
            ephemeral: true,
            sequential: false,
        },
    );
    assert_eq!(created_path(made.outcome), "/svc/a");
    let taken = h.tree.clone();
    let image_then = taken.to_snapshot();
    h.apply(Action::ExpireSessions {
        sessions: vec![session],
    })
    .unwrap();
    assert!(h.tree.session(session).is_none());
    let kept = taken.session(session).expect("the clone lost the session");
    assert!(kept.ephemerals.contains("/svc/a"));
    assert_eq!(taken.to_snapshot(), image_then);
}
