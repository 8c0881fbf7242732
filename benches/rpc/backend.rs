//! What the handlers of the `add-await` and `chain` scenarios wait on. `add-await`: a task in
//! the provider process that adds numbers and answers each request through a oneshot channel,
//! as a connection pool or a database answers a real handler. `chain`: a second provider of
//! the same system, in the provider process, called over loopback through that system's own
//! client, as a service calling another does. Either way the handler is pending on its first
//! poll and woken from another task.

use rmif_suite::calculator::{Calculator, CalculatorConsumer};
use tokio::sync::{mpsc, oneshot};

use crate::raw::RawCaller;
use crate::tarpc::BenchClient;

type Request = (u64, u64, oneshot::Sender<u64>);

/// What an awaiting handler asks for `a + b`; clones share the task or the client.
#[derive(Clone)]
pub enum Backend {
    /// The backend task.
    Task(mpsc::UnboundedSender<Request>),
    /// The downstream provider, through rmif's stub.
    Rmif(CalculatorConsumer),
    /// The downstream provider, through tarpc's client.
    Tarpc(BenchClient),
    /// The downstream provider, through the raw client.
    Raw(RawCaller),
}

impl Backend {
    /// Starts the backend task on the current runtime.
    pub fn task() -> Backend {
        let (requests, mut queue) = mpsc::unbounded_channel::<Request>();
        tokio::spawn(async move {
            while let Some((a, b, answer)) = queue.recv().await {
                let _ = answer.send(a.wrapping_add(b));
            }
        });
        Backend::Task(requests)
    }

    /// `a + b`, as the backend answers it.
    pub async fn add(&self, a: u64, b: u64) -> u64 {
        match self {
            Backend::Task(requests) => {
                let (answer, answered) = oneshot::channel();
                requests
                    .send((a, b, answer))
                    .expect("the backend task runs as long as the provider");
                answered.await.expect("the backend answers every request")
            }
            Backend::Rmif(downstream) => downstream
                .add(a, b)
                .await
                .expect("the downstream rmif provider answers"),
            Backend::Tarpc(downstream) => downstream
                .add(crate::tarpc::context(), a, b)
                .await
                .expect("the downstream tarpc provider answers"),
            Backend::Raw(downstream) => {
                use crate::caller::Caller;
                downstream
                    .add(a, b)
                    .await
                    .expect("the downstream raw provider answers")
            }
        }
    }
}
