//! Every kind of refused operation gets a typed error naming the path, and the cluster keeps
//! serving.

use std::time::Duration;

use rmif_registry::node::MAX_DATA_LEN;
use rmif_registry::{Consistency, CreateMode, RegistryError};

use rmif_testkit::{Cluster, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_operations_are_typed_errors_and_the_cluster_keeps_serving() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let client = cluster.client();
    client
        .create("/e", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    client
        .create("/e/child", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();

    let invalid = client
        .create("/e//x", b"", CreateMode::PERSISTENT)
        .await
        .unwrap_err();
    assert!(
        matches!(&invalid, RegistryError::InvalidPath { path, .. } if path == "/e//x"),
        "{invalid:?}"
    );
    let invalid = client
        .get("relative", Consistency::Linearizable)
        .await
        .unwrap_err();
    assert!(
        matches!(invalid, RegistryError::InvalidPath { .. }),
        "{invalid:?}"
    );

    let big = vec![0u8; MAX_DATA_LEN + 1];
    let too_large = client
        .create("/e/big", &big, CreateMode::PERSISTENT)
        .await
        .unwrap_err();
    assert!(
        matches!(&too_large, RegistryError::TooLarge { path, .. } if path == "/e/big"),
        "{too_large:?}"
    );

    let conflict = client.set("/e", b"x", Some(7)).await.unwrap_err();
    assert_eq!(
        conflict,
        RegistryError::BadVersion {
            path: "/e".into(),
            expected: 7,
            actual: 0
        }
    );

    let not_empty = client.delete("/e", None).await.unwrap_err();
    assert_eq!(not_empty, RegistryError::NotEmpty { path: "/e".into() });

    let exists = client
        .create("/e/child", b"", CreateMode::PERSISTENT)
        .await
        .unwrap_err();
    assert_eq!(
        exists,
        RegistryError::NodeExists {
            path: "/e/child".into()
        }
    );

    let missing = client
        .create("/nope/x", b"", CreateMode::PERSISTENT)
        .await
        .unwrap_err();
    assert_eq!(
        missing,
        RegistryError::NoNode {
            path: "/nope".into()
        }
    );

    // Still serving after all of that.
    client.set("/e", b"fine", Some(0)).await.unwrap();
    assert_eq!(
        client
            .get("/e", Consistency::Linearizable)
            .await
            .unwrap()
            .data,
        b"fine"
    );

    // Without a majority, writes and linearizable reads fail with "no quorum" (or an unknown
    // outcome for a write caught mid-flight), within the client's deadline.
    let (_, survivor) = cluster.leader_and_follower(Duration::from_secs(5)).await;
    for id in (1..=3).filter(|id| *id != survivor) {
        cluster.kill(id);
    }
    let lonely = cluster.client_of(survivor);
    let write = lonely
        .create("/e/orphan", b"", CreateMode::PERSISTENT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            write,
            RegistryError::NoQuorum(_) | RegistryError::Indeterminate(_)
        ),
        "{write:?}"
    );
    let read = lonely
        .get("/e", Consistency::Linearizable)
        .await
        .unwrap_err();
    assert!(matches!(read, RegistryError::NoQuorum(_)), "{read:?}");
    // A stale read is still served from the survivor's state.
    assert_eq!(
        lonely.get("/e", Consistency::Stale).await.unwrap().data,
        b"fine"
    );

    // With the majority back, the cluster serves again.
    for id in (1..=3).filter(|id| *id != survivor) {
        cluster.spawn(id);
    }
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    client
        .create("/e/back", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
}

/// A member that cannot start says why, down to the system's own words: here its client port
/// is taken.
#[test]
fn a_member_that_cannot_listen_says_what_the_system_said() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(rmif_testkit::program("rmif-registry"))
        .args(["--dev", "--client-addr", &addr.to_string(), "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen for clients on {addr}: "))
            && stderr.to_lowercase().contains("in use"),
        "{stderr}"
    );
}
