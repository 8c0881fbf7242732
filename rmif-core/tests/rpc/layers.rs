//! The extension point: consumer and provider layers see every call with its service, method,
//! metadata, peer, deadline and outcome, can refuse it, and tower's own layers fit; and a
//! handler's downstream calls never outlive the call that made them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use rmif_core::layer::{
    BoxError, ConsumerAnswer, ConsumerCall, ProviderAnswer, ProviderCall, Service, layer_fn,
};
use rmif_core::protocol::Status;
use rmif_core::{CallContext, Client, Error, ProviderConfig, Server};
use tokio::time::Instant;

use crate::support::{
    CalcError, Calculator, CalculatorConsumer, CalculatorProvider, LocalCalculator,
    consumer_config, eventually,
};

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// What a recording layer saw of one call.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    method: &'static str,
    trace: Option<String>,
    peer: Option<std::net::SocketAddr>,
    time_left: Option<Duration>,
    outcome: Result<Option<Status>, String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Records every call it passes on; a consumer-side one also adds a `trace` entry.
#[derive(Clone)]
struct Record<S> {
    inner: S,
    log: Log,
}

impl<S> Service<ConsumerCall> for Record<S>
where
    S: Service<ConsumerCall, Response = ConsumerAnswer, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ConsumerAnswer;
    type Error = BoxError;
    type Future = BoxFuture<Result<ConsumerAnswer, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: ConsumerCall) -> Self::Future {
        call.metadata_mut().insert("trace", "t-42").unwrap();
        let (service, method) = (call.service().to_owned(), call.method());
        let time_left = call.deadline().saturating_duration_since(Instant::now());
        let log = self.log.clone();
        let answering = self.inner.call(call);
        Box::pin(async move {
            let answer = answering.await;
            log.lock().unwrap().push(Seen {
                service,
                method,
                trace: Some("t-42".into()),
                peer: answer.as_ref().ok().map(ConsumerAnswer::peer),
                time_left: Some(time_left),
                outcome: answer
                    .as_ref()
                    .map(|a| Some(a.status()))
                    .map_err(|e| e.to_string()),
            });
            answer
        })
    }
}

impl<S> Service<ProviderCall> for Record<S>
where
    S: Service<ProviderCall, Response = ProviderAnswer, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ProviderAnswer;
    type Error = BoxError;
    type Future = BoxFuture<Result<ProviderAnswer, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ProviderCall) -> Self::Future {
        let seen = Seen {
            service: call.service().to_owned(),
            method: call.method(),
            trace: call.metadata().get("trace").map(str::to_owned),
            peer: Some(call.peer()),
            time_left: call
                .deadline()
                .map(|d| d.saturating_duration_since(Instant::now())),
            outcome: Ok(None),
        };
        let log = self.log.clone();
        let answering = self.inner.call(call);
        Box::pin(async move {
            let answer = answering.await;
            let mut seen = seen;
            seen.outcome = answer
                .as_ref()
                .map(|a| a.status())
                .map_err(|e| e.to_string());
            log.lock().unwrap().push(seen);
            answer
        })
    }
}

#[tokio::test]
async fn layers_on_both_sides_see_every_call_and_metadata_travels() {
    let consumer_log = Log::default();
    let provider_log = Log::default();
    let calculator = LocalCalculator::default();
    let server = Server::builder(ProviderConfig::loopback())
        .layer(layer_fn({
            let log = provider_log.clone();
            move |inner| Record {
                inner,
                log: log.clone(),
            }
        }))
        .add_service(CalculatorProvider::new(calculator))
        .serve()
        .await
        .unwrap();
    let stub: CalculatorConsumer = Client::builder(consumer_config(&[&server]))
        .layer(layer_fn({
            let log = consumer_log.clone();
            move |inner| Record {
                inner,
                log: log.clone(),
            }
        }))
        .build()
        .stub();

    assert_eq!(stub.add(2, 3).await.unwrap(), 5);
    assert_eq!(stub.div(1, 0).await, Err(CalcError::DivisionByZero));
    stub.record(4).await.unwrap();
    let items: Vec<_> = stub.count(3, None).await.unwrap().collect().await;
    assert_eq!(items, [Ok(1), Ok(2), Ok(3)]);
    // Handlers see the consumer's metadata too.
    assert_eq!(stub.trace().await.unwrap().as_deref(), Some("t-42"));

    let consumer_seen = consumer_log.lock().unwrap().clone();
    let methods: Vec<_> = consumer_seen.iter().map(|s| s.method).collect();
    assert_eq!(methods, ["add", "div", "record", "count", "trace"]);
    for seen in &consumer_seen {
        assert_eq!(seen.service, "test.Calculator");
        assert_eq!(seen.peer, Some(server.local_addr()), "{seen:?}");
        let left = seen.time_left.unwrap();
        assert!(
            left > Duration::from_secs(8) && left <= Duration::from_secs(9),
            "{seen:?}"
        );
    }
    let statuses: Vec<_> = consumer_seen.iter().map(|s| s.outcome.clone()).collect();
    assert_eq!(
        statuses,
        [
            Ok(Some(Status::Ok)),
            Ok(Some(Status::AppError)),
            Ok(Some(Status::Ok)),
            Ok(Some(Status::Ok)),
            Ok(Some(Status::Ok)),
        ]
    );

    // The one-way call reaches the provider's layer when it runs, maybe after the others.
    eventually("the provider's layer saw all five calls", || {
        provider_log.lock().unwrap().len() == 5
    })
    .await;
    let provider_seen = provider_log.lock().unwrap().clone();
    for seen in &provider_seen {
        assert_eq!(seen.service, "test.Calculator");
        assert_eq!(seen.trace.as_deref(), Some("t-42"), "{seen:?}");
        assert!(seen.peer.unwrap().ip().is_loopback());
        let left = seen.time_left.expect("the consumer sent a deadline");
        assert!(left <= Duration::from_secs(9), "{seen:?}");
    }
    let outcome_of = |method: &str| {
        provider_seen
            .iter()
            .find(|s| s.method == method)
            .map(|s| s.outcome.clone())
    };
    assert_eq!(outcome_of("add"), Some(Ok(Some(Status::Ok))));
    assert_eq!(outcome_of("div"), Some(Ok(Some(Status::AppError))));
    assert_eq!(outcome_of("record"), Some(Ok(None)), "one-way: no answer");
    assert_eq!(
        outcome_of("count"),
        Some(Ok(Some(Status::Ok))),
        "the opening"
    );
    server.shutdown().await;
}

/// Refuses calls of one method, counting what it lets through.
#[derive(Clone)]
struct Refuse<S> {
    inner: S,
    method: &'static str,
}

impl<S> Service<ProviderCall> for Refuse<S>
where
    S: Service<ProviderCall, Response = ProviderAnswer, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ProviderAnswer;
    type Error = BoxError;
    type Future = BoxFuture<Result<ProviderAnswer, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ProviderCall) -> Self::Future {
        if call.method() == self.method {
            let refusal = ProviderAnswer::rejected(format!("{} is closed today", self.method));
            return Box::pin(async move { Ok(refusal) });
        }
        Box::pin(self.inner.call(call))
    }
}

impl<S> Service<ConsumerCall> for Refuse<S>
where
    S: Service<ConsumerCall, Response = ConsumerAnswer, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ConsumerAnswer;
    type Error = BoxError;
    type Future = BoxFuture<Result<ConsumerAnswer, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ConsumerCall) -> Self::Future {
        if call.method() == self.method {
            let refusal: BoxError = format!("{} is not allowed from here", self.method).into();
            return Box::pin(async move { Err(refusal) });
        }
        Box::pin(self.inner.call(call))
    }
}

#[tokio::test]
async fn a_refused_call_never_reaches_its_handler_and_says_why() {
    let calculator = LocalCalculator::default();
    let probe = calculator.probe.clone();
    let server = Server::builder(ProviderConfig::loopback())
        .layer(layer_fn(|inner| Refuse {
            inner,
            method: "record",
        }))
        .add_service(CalculatorProvider::new(calculator))
        .serve()
        .await
        .unwrap();
    let stub: CalculatorConsumer = Client::builder(consumer_config(&[&server]))
        .layer(layer_fn(|inner| Refuse {
            inner,
            method: "div",
        }))
        .build()
        .stub();

    // Refused by the consumer's layer: nothing is sent.
    match stub.div(4, 2).await {
        Err(CalcError::Rpc(Error::Rejected { method, reason, .. })) => {
            assert_eq!(method, "div");
            assert!(reason.contains("not allowed from here"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Refused by the provider's layer: the handler does not run; a one-way call is dropped.
    stub.record(7).await.unwrap();
    assert_eq!(stub.recorded().await.unwrap(), 0);
    assert_eq!(probe.recorded.load(Ordering::SeqCst), 0);
    // Other calls pass.
    assert_eq!(stub.add(1, 1).await.unwrap(), 2);

    let refused_unary = Server::builder(ProviderConfig::loopback())
        .layer(layer_fn(|inner| Refuse {
            inner,
            method: "add",
        }))
        .add_service(CalculatorProvider::new(LocalCalculator::default()))
        .serve()
        .await
        .unwrap();
    let stub: CalculatorConsumer =
        Client::with_static_providers(consumer_config(&[&refused_unary])).stub();
    match stub.add(1, 1).await {
        Err(CalcError::Rpc(Error::Rejected { reason, .. })) => {
            assert!(reason.contains("add is closed today"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
    refused_unary.shutdown().await;
}

#[tokio::test]
async fn a_tower_timeout_layer_ends_a_call_and_the_provider_hears_of_it() {
    let calculator = LocalCalculator::default();
    let probe = calculator.probe.clone();
    let server = Server::builder(ProviderConfig::loopback())
        .add_service(CalculatorProvider::new(calculator))
        .serve()
        .await
        .unwrap();
    let stub: CalculatorConsumer = Client::builder(consumer_config(&[&server]))
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            200,
        )))
        .build()
        .stub();
    // The method's own deadline is 9 s; tower's timeout ends the call first, and the provider
    // is told the call was abandoned.
    match stub.park().await {
        Err(CalcError::Rpc(Error::Rejected { method, reason, .. })) => {
            assert_eq!(method, "park");
            assert!(reason.contains("timed out"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    eventually("the abandoned handler is dropped on the provider", || {
        probe.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_tower_concurrency_limit_holds_calls_back_on_the_provider() {
    let calculator = LocalCalculator::default();
    let probe = calculator.probe.clone();
    let server = Server::builder(ProviderConfig::loopback())
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .add_service(CalculatorProvider::new(calculator))
        .serve()
        .await
        .unwrap();
    let stub = crate::support::consumer(&[&server]);
    let first = tokio::spawn({
        let stub = stub.clone();
        async move { stub.park().await }
    });
    eventually("the first call is parked", || {
        probe.parked.load(Ordering::SeqCst) == 1
    })
    .await;
    let second = tokio::spawn({
        let stub = stub.clone();
        async move { stub.add(1, 2).await }
    });
    // Unlimited, the second call would be answered within a millisecond or two.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "the limit let a second call in");
    probe.release.notify_waiters();
    first.await.unwrap().unwrap();
    assert_eq!(second.await.unwrap().unwrap(), 3);
    server.shutdown().await;
}

/// A service whose handler calls another provider, recording the time it had and the time the
/// downstream handler was given.
#[rmif_core::service(name = "test.Front")]
pub trait Front {
    #[rmif(timeout_ms = 300)]
    async fn relay(&self) -> Result<(), Error>;
}

struct Relay {
    downstream: CalculatorConsumer,
    front_had: Arc<Mutex<Option<Duration>>>,
    downstream_calls: Arc<AtomicUsize>,
}

impl Front for Relay {
    async fn relay(&self) -> Result<(), Error> {
        *self.front_had.lock().unwrap() = CallContext::current().and_then(|c| c.remaining());
        self.downstream_calls.fetch_add(1, Ordering::SeqCst);
        // remaining_ms's own deadline is the consumer's default, 9 s.
        self.downstream
            .remaining_ms()
            .await
            .map(|_| ())
            .map_err(|e| match e {
                CalcError::Rpc(e) => e,
                other => Error::Remote {
                    service: "test.Calculator".into(),
                    method: "remaining_ms".into(),
                    reason: other.to_string(),
                },
            })
    }
}

/// Records the time left when remaining_ms is called downstream.
#[derive(Clone)]
struct RecordTimeLeft<S> {
    inner: S,
    seen: Arc<Mutex<Vec<Option<Duration>>>>,
}

impl<S> Service<ProviderCall> for RecordTimeLeft<S>
where
    S: Service<ProviderCall, Response = ProviderAnswer, Error = BoxError>,
{
    type Response = ProviderAnswer;
    type Error = BoxError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ProviderCall) -> S::Future {
        let left = call
            .deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        self.seen.lock().unwrap().push(left);
        self.inner.call(call)
    }
}

#[tokio::test]
async fn a_handlers_downstream_calls_inherit_its_deadline() {
    let downstream_seen = Arc::new(Mutex::new(Vec::new()));
    let downstream = Server::builder(ProviderConfig::loopback())
        .layer(layer_fn({
            let seen = downstream_seen.clone();
            move |inner| RecordTimeLeft {
                inner,
                seen: seen.clone(),
            }
        }))
        .add_service(CalculatorProvider::new(LocalCalculator::default()))
        .serve()
        .await
        .unwrap();
    let front_had = Arc::new(Mutex::new(None));
    let downstream_calls = Arc::new(AtomicUsize::new(0));
    let front = Server::builder(ProviderConfig::loopback())
        .add_service(FrontProvider::new(Relay {
            downstream: Client::with_static_providers(consumer_config(&[&downstream])).stub(),
            front_had: front_had.clone(),
            downstream_calls: downstream_calls.clone(),
        }))
        .serve()
        .await
        .unwrap();
    let stub: FrontConsumer = Client::with_static_providers(consumer_config(&[&front])).stub();
    stub.relay().await.unwrap();

    let front_had = front_had
        .lock()
        .unwrap()
        .expect("the front call had a deadline");
    let downstream_had = downstream_seen.lock().unwrap()[0].expect("a deadline downstream");
    assert!(front_had <= Duration::from_millis(300), "{front_had:?}");
    // Without propagation the downstream call would have had its own 9 s.
    assert!(
        downstream_had <= front_had + Duration::from_millis(1),
        "downstream {downstream_had:?}, front {front_had:?}"
    );
    assert_eq!(downstream_calls.load(Ordering::SeqCst), 1);
    front.shutdown().await;
    downstream.shutdown().await;
}

/// Captures what the test's tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn monitor_log_writes_one_line_per_call_on_each_side() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // This test's runtime has one thread: everything below logs through this subscriber.
    let _default = tracing::subscriber::set_default(subscriber);

    let mut config = ProviderConfig::loopback();
    config.monitor_log = true;
    let (server, _) = crate::support::start_provider(config).await;
    // Both sides from their configuration.
    let stub: CalculatorConsumer = Client::builder(rmif_core::ConsumerConfig {
        monitor_log: true,
        ..consumer_config(&[&server])
    })
    .build()
    .stub();
    assert_eq!(stub.add(2, 2).await.unwrap(), 4);
    assert_eq!(stub.div(1, 0).await, Err(CalcError::DivisionByZero));
    server.shutdown().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let calls: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("rmif::monitor"))
        .collect();
    let line = |side: &str, method: &str| {
        calls
            .iter()
            .find(|l| {
                l.contains(&format!("side=\"{side}\""))
                    && l.contains(&format!("method=\"{method}\""))
            })
            .unwrap_or_else(|| panic!("no {side} line for {method} in:\n{text}"))
            .to_string()
    };
    for side in ["provider", "consumer"] {
        let add = line(side, "add");
        assert!(
            add.contains("service=\"test.Calculator\"") && add.contains("status=Ok"),
            "{add}"
        );
        assert!(add.contains("latency_us="), "{add}");
        assert!(line(side, "div").contains("status=AppError"));
    }
    assert!(line("consumer", "add").contains(&format!("peer=\"{}\"", server_addr(&text))));
    assert_eq!(calls.len(), 4, "one line per call and side:\n{text}");
}

/// The provider's address as its "provider listening" line gives it.
fn server_addr(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("provider listening"))
        .and_then(|l| l.split("local_addr=").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        .unwrap_or_default()
}
