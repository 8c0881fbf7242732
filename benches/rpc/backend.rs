//! What the handlers of the `add-await`, `add-lock` and `chain` scenarios wait on. `add-await`:
//! a task in the provider process that adds numbers and answers each request through a oneshot
//! channel, as a connection pool or a database answers a real handler. `add-lock`: an async
//! mutex over shared state, held while the handler awaits that task, as a handler updating a
//! cache or a session table from a store holds one. `chain`: a second provider of the same system, in the
//! provider process, called over loopback through that system's own client, as a service
//! calling another does. Every way the handler is pending on its first poll and woken later.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::caller::Caller;

type Request = (u64, u64, oneshot::Sender<u64>);

/// What an awaiting handler asks for `a + b`; clones share the task or the client.
#[derive(Clone)]
pub enum Backend {
    /// The backend task.
    Task(mpsc::UnboundedSender<Request>),
    /// State shared by every handler (here a count of the additions made) behind an async
    /// lock, held while the backend task answers.
    Lock(Arc<Mutex<u64>>, mpsc::UnboundedSender<Request>),
    /// The downstream provider, through its system's client (the same boxing for every
    /// system).
    Downstream(Arc<dyn Fn(u64, u64) -> BoxFuture<'static, u64> + Send + Sync>),
}

impl Backend {
    /// Starts the backend task on the current runtime.
    pub fn task() -> Backend {
        Backend::Task(backend_task())
    }

    /// A shared lock, which each call holds while the backend task (started on the current
    /// runtime) answers it.
    pub fn lock() -> Backend {
        Backend::Lock(Arc::new(Mutex::new(0)), backend_task())
    }

    /// Calls `client`'s `add` (the second provider of a chain).
    pub fn downstream<C: Caller>(client: C) -> Backend {
        let client = Arc::new(client);
        Backend::Downstream(Arc::new(move |a, b| {
            let client = client.clone();
            Box::pin(async move {
                client
                    .add(a, b)
                    .await
                    .expect("the downstream provider answers")
            })
        }))
    }

    /// `a + b`, as the backend answers it.
    pub async fn add(&self, a: u64, b: u64) -> u64 {
        match self {
            Backend::Task(requests) => ask(requests, a, b).await,
            Backend::Lock(additions, requests) => {
                // Held across the await: the calls queue on the lock and each is woken by the
                // one before.
                let mut additions = additions.lock().await;
                let sum = ask(requests, a, b).await;
                *additions += 1;
                sum
            }
            Backend::Downstream(add) => add(a, b).await,
        }
    }
}

/// Starts the task that answers `(a, b)` with `a + b`, on the current runtime.
fn backend_task() -> mpsc::UnboundedSender<Request> {
    let (requests, mut queue) = mpsc::unbounded_channel::<Request>();
    tokio::spawn(async move {
        while let Some((a, b, answer)) = queue.recv().await {
            let _ = answer.send(a.wrapping_add(b));
        }
    });
    requests
}

/// `a + b`, from the backend task.
async fn ask(requests: &mpsc::UnboundedSender<Request>, a: u64, b: u64) -> u64 {
    let (answer, answered) = oneshot::channel();
    requests
        .send((a, b, answer))
        .expect("the backend task runs as long as the provider");
    answered.await.expect("the backend answers every request")
}
