//! What the handlers of the `add-await` scenarios wait on: a task in the provider process that
//! adds numbers and answers each request through a oneshot channel, as a connection pool, a
//! database or a downstream service answers a real handler. A handler that asks it is pending
//! on its first poll and is woken from another task, whatever the system.

use tokio::sync::{mpsc, oneshot};

type Request = (u64, u64, oneshot::Sender<u64>);

/// A handle on the backend task; clones share the task.
#[derive(Clone)]
pub struct Backend(mpsc::UnboundedSender<Request>);

impl Backend {
    /// Starts the backend task on the current runtime.
    pub fn start() -> Backend {
        let (requests, mut queue) = mpsc::unbounded_channel::<Request>();
        tokio::spawn(async move {
            while let Some((a, b, answer)) = queue.recv().await {
                let _ = answer.send(a.wrapping_add(b));
            }
        });
        Backend(requests)
    }

    /// `a + b`, as the backend task answers it.
    pub async fn add(&self, a: u64, b: u64) -> u64 {
        let (answer, answered) = oneshot::channel();
        self.0
            .send((a, b, answer))
            .expect("the backend task runs as long as the provider");
        answered.await.expect("the backend answers every request")
    }
}
