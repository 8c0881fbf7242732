//! A member restarted while many clients write through it answers their forwarded writes with
//! their result: never "the leader changed" while the leader stayed the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmif_testkit::{Cluster, Settings};

use crate::load::{Tally, WRITERS, write_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_under_write_load_answers_forwarded_writes_with_their_result() {
    // A long election timeout: the premise is a leader that stays, even on a loaded machine.
    let settings = Settings {
        election_ticks: 20,
        ..Settings::default()
    };
    let mut cluster = Cluster::start(3, settings).await;
    let (leader, follower) = cluster.leader_and_follower(Duration::from_secs(20)).await;
    let term = cluster.status(leader).await.unwrap().term;

    let mut total = Tally::default();
    for round in 0..3 {
        cluster.kill(follower);
        cluster.spawn(follower);
        // Every writer goes through the restarted member only, from its first moment on.
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(write_until(
                    cluster.client_of(follower),
                    format!("r{round}-w{w}"),
                    stop.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop.store(true, Ordering::Relaxed);
        let mut round_tally = Tally::default();
        for writer in writers {
            round_tally.add(writer.await.unwrap());
        }
        assert!(
            round_tally.written > 0,
            "round {round}: the restarted member served no write: {round_tally:?}"
        );
        total.add(round_tally);
    }

    let after = cluster.status(leader).await.unwrap();
    assert_eq!(
        (after.leader, after.term),
        (leader, term),
        "premise: the leader stayed the same throughout"
    );
    assert_eq!(
        total.leader_changed, 0,
        "writes answered 'the leader changed' although member {leader} led term {term} \
         throughout: {total:?}"
    );
}
