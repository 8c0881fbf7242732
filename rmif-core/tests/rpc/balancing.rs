//! Balancing end to end: consistent hashing on a method's key argument over several providers.

use std::collections::{HashMap, HashSet};

use rmif_core::balance::BalancePolicy;
use rmif_core::{Client, ConsumerConfig, ProviderConfig, Server, ServerHandle};

use crate::support::CalcError;

/// Each provider answers with its own number, so that the consumer sees who served it.
#[rmif_core::service(name = "test.Sessions")]
pub trait Sessions {
    /// Routed by `user` alone.
    #[rmif(hash_key = "user")]
    async fn touch(&self, note: u64, user: String) -> Result<u32, CalcError>;
    /// Routed by all its arguments.
    async fn touch_any(&self, note: u64, user: String) -> Result<u32, CalcError>;
}

struct Numbered(u32);

impl Sessions for Numbered {
    async fn touch(&self, _: u64, _: String) -> Result<u32, CalcError> {
        Ok(self.0)
    }
    async fn touch_any(&self, _: u64, _: String) -> Result<u32, CalcError> {
        Ok(self.0)
    }
}

async fn providers(n: u32) -> Vec<ServerHandle> {
    let mut servers = Vec::new();
    for number in 0..n {
        let server = Server::builder(ProviderConfig::loopback())
            .add_service(SessionsProvider::new(Numbered(number)))
            .serve()
            .await
            .expect("provider starts");
        servers.push(server);
    }
    servers
}

#[tokio::test]
async fn consistent_hashing_on_a_key_argument_keeps_each_key_on_one_provider() {
    let servers = providers(4).await;
    let sessions: SessionsConsumer = Client::with_static_providers(ConsumerConfig {
        static_providers: servers.iter().map(ServerHandle::local_addr).collect(),
        policy: BalancePolicy::ConsistentHash,
        ..ConsumerConfig::default()
    })
    .stub();

    let mut served_by: HashMap<String, HashSet<u32>> = HashMap::new();
    let mut any_served_by: HashMap<String, HashSet<u32>> = HashMap::new();
    for user in (0..40).map(|u| format!("user-{u}")) {
        for note in 0..8 {
            let by = sessions.touch(note, user.clone()).await.expect("touch");
            served_by.entry(user.clone()).or_default().insert(by);
            let by = sessions
                .touch_any(note, user.clone())
                .await
                .expect("touch_any");
            any_served_by.entry(user.clone()).or_default().insert(by);
        }
    }
    for (user, by) in &served_by {
        assert_eq!(by.len(), 1, "{user} was served by {by:?}");
    }
    let used: HashSet<u32> = served_by.values().flatten().copied().collect();
    assert!(used.len() >= 3, "40 users landed on only {used:?}");
    // Without the key, the other arguments move the same user between providers.
    assert!(
        any_served_by.values().any(|by| by.len() > 1),
        "hashing all the arguments kept every user on one provider"
    );
}
