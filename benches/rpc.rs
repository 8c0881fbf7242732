//! RPC throughput and latency on loopback: rmif against tarpc and against a hand-written
//! pipelined protocol over raw framed TCP (the "how fast could this be" floor).
//!
//! ```text
//! cargo bench -p rmif-bench --bench rpc [-- OPTIONS]
//!     --runs N            repeat the whole matrix N times, report medians (default 3)
//!     --duration S        seconds measured per cell (default 3), after --warmup S (default 1)
//!     --only SYSTEM       rmif, tarpc or raw
//!     --scenario NAME     add-1, add-16, add-256, echo-1k[-lz4], echo-64k[-lz4]
//! ```
//!
//! Every system serves the same two calls, `add(u64, u64) -> u64` and `echo(Vec<u8>) -> Vec<u8>`,
//! from a separate provider process: this binary re-executes itself with `--serve SYSTEM`, and that
//! child prints its address on its first line of stdout and exits when its stdin closes. The
//! parent makes ONE client (one TCP connection) per measurement and shares it among N caller
//! tasks, each looping call-after-call. Every call's latency goes into a histogram.
//!
//! For each (scenario, system) the load runs ~1 s of warm-up and then `--duration` seconds
//! (default 3) of measurement; the whole matrix is repeated `--runs` times (default 3), the
//! systems' order rotating between runs, and the table shows the median of each figure.
//!
//! In the `-lz4` scenarios rmif and raw compress bodies of 1 KiB and more with the same lz4 block
//! codec (raw as the floor of that work); tarpc has no compression, so it is not measured again
//! and the table repeats its uncompressed figures. Echo bodies are JSON-like ASCII text, which lz4
//! shrinks.
//! tarpc runs as shipped: `serde_transport::tcp` leaves Nagle's algorithm on, which on this
//! workload is faster for tarpc than TCP_NODELAY (rmif and raw set TCP_NODELAY).
//!
//! Run without `--bench` (as `cargo test --benches` does) the binary only smoke-tests every pair
//! for a fraction of a second.

#[path = "args.rs"]
mod args;

use args::{parse_positive, parse_seconds};
use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rmif_core::{Client, Compression, CompressionPolicy, ConsumerConfig, ProviderConfig, Server};
use rmif_suite::calculator::{Arithmetic, Calculator, CalculatorConsumer, CalculatorProvider};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// Generous enough that no call in a benchmark ever times out, for rmif and tarpc alike.
const CALL_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// What is measured
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum System {
    Rmif,
    Tarpc,
    Raw,
}

impl System {
    const ALL: [System; 3] = [System::Rmif, System::Tarpc, System::Raw];

    fn name(self) -> &'static str {
        match self {
            System::Rmif => "rmif",
            System::Tarpc => "tarpc",
            System::Raw => "raw",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// tarpc has no compression; raw compresses with rmif's codec, as the floor of the same work.
    fn compresses(self) -> bool {
        self != System::Tarpc
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Echo(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Scenario {
    name: &'static str,
    op: Op,
    callers: usize,
    lz4: bool,
}

/// Every scenario, in table order. The `-lz4` ones compress bodies of 1 KiB and more.
const SCENARIOS: [Scenario; 7] = [
    Scenario::new("add-1", Op::Add, 1, false),
    Scenario::new("add-16", Op::Add, 16, false),
    Scenario::new("add-256", Op::Add, 256, false),
    Scenario::new("echo-1k", Op::Echo(1024), 16, false),
    Scenario::new("echo-1k-lz4", Op::Echo(1024), 16, true),
    Scenario::new("echo-64k", Op::Echo(64 * 1024), 16, false),
    Scenario::new("echo-64k-lz4", Op::Echo(64 * 1024), 16, true),
];

impl Scenario {
    const fn new(name: &'static str, op: Op, callers: usize, lz4: bool) -> Self {
        Scenario {
            name,
            op,
            callers,
            lz4,
        }
    }

    /// The scenario actually run for `system`: systems without compression run the
    /// uncompressed twin of an `-lz4` scenario.
    fn effective_for(self, system: System) -> Scenario {
        if self.lz4 && !system.compresses() {
            SCENARIOS
                .into_iter()
                .find(|s| s.op == self.op && s.callers == self.callers && !s.lz4)
                .expect("every lz4 scenario has an uncompressed twin")
        } else {
            self
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

struct Options {
    runs: usize,
    warmup: Duration,
    duration: Duration,
    systems: Vec<System>,
    scenarios: Vec<Scenario>,
    smoke: bool,
}

enum Mode {
    Serve { system: System, lz4: bool },
    Bench(Options),
}

fn parse_args() -> Result<Mode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Cargo passes `--bench` to harness-less benches under `cargo bench` only.
    let mut options = Options {
        runs: 3,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(3),
        systems: System::ALL.to_vec(),
        scenarios: SCENARIOS.to_vec(),
        smoke: !args.iter().any(|a| a == "--bench"),
    };
    let mut serve = None;
    let mut lz4 = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--bench" => {}
            "--serve" => serve = Some(parse_system(&value("--serve")?)?),
            "--lz4" => lz4 = true,
            "--only" => options.systems = vec![parse_system(&value("--only")?)?],
            "--runs" => options.runs = parse_positive(&value("--runs")?, "--runs")?,
            "--duration" => options.duration = parse_seconds(&value("--duration")?)?,
            "--warmup" => options.warmup = parse_seconds(&value("--warmup")?)?,
            "--scenario" => {
                let name = value("--scenario")?;
                let scenario = SCENARIOS
                    .into_iter()
                    .find(|s| s.name == name)
                    .ok_or(format!(
                        "unknown scenario {name}; one of: {}",
                        SCENARIOS.map(|s| s.name).join(", ")
                    ))?;
                options.scenarios = vec![scenario];
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let Some(system) = serve {
        return Ok(Mode::Serve { system, lz4 });
    }
    if options.smoke {
        options.runs = 1;
        options.warmup = Duration::from_millis(100);
        options.duration = Duration::from_millis(200);
    }
    Ok(Mode::Bench(options))
}

fn parse_system(name: &str) -> Result<System, String> {
    System::from_name(name).ok_or(format!("unknown system {name}; one of: rmif, tarpc, raw"))
}

fn main() {
    match parse_args() {
        Ok(Mode::Serve { system, lz4 }) => serve(system, lz4),
        Ok(Mode::Bench(options)) => bench(options),
        Err(error) => {
            eprintln!("rpc bench: {error}");
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The provider process
// ---------------------------------------------------------------------------------------------

fn serve(system: System, lz4: bool) {
    // Exit as soon as the parent goes away, however it goes: its end of our stdin closes.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let announce = |addr: SocketAddr| {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{addr}")
                .and_then(|()| stdout.flush())
                .expect("stdout");
        };
        match system {
            System::Rmif => {
                let config = ProviderConfig {
                    bind: Ipv4Addr::LOCALHOST.into(),
                    port: 0,
                    compression: compression(lz4),
                    ..ProviderConfig::loopback()
                };
                let server = Server::builder(config)
                    .add_service(CalculatorProvider::new(Arithmetic))
                    .serve()
                    .await
                    .expect("rmif server");
                announce(server.local_addr());
                std::future::pending::<()>().await;
            }
            System::Tarpc => {
                let listener = bind_loopback().await;
                announce(listener.local_addr().expect("local addr"));
                tarpc_bench::serve(listener).await;
            }
            System::Raw => {
                let listener = bind_loopback().await;
                announce(listener.local_addr().expect("local addr"));
                raw::serve(listener).await;
            }
        }
    });
}

async fn bind_loopback() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind 127.0.0.1")
}

fn compression(lz4: bool) -> CompressionPolicy {
    if lz4 {
        CompressionPolicy {
            algorithm: Compression::Lz4,
            threshold: 1024,
        }
    } else {
        CompressionPolicy::default()
    }
}

/// A provider child process; dropping it closes its stdin, which ends it.
struct ProviderProcess {
    child: Child,
    addr: SocketAddr,
}

impl ProviderProcess {
    fn start(system: System, lz4: bool) -> ProviderProcess {
        let exe = std::env::current_exe().expect("current_exe");
        let mut command = Command::new(exe);
        command.args(["--serve", system.name()]);
        if lz4 {
            command.arg("--lz4");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the provider process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the provider's address");
        let addr = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "{} provider printed {line:?}, not an address",
                system.name()
            )
        });
        ProviderProcess { child, addr }
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The three systems, behind one calling interface
// ---------------------------------------------------------------------------------------------

/// One connection's worth of client, cloned into every caller task. Generic rather than `dyn`
/// so that the harness adds no boxing of its own to any system.
trait Caller: Clone + Send + Sync + 'static {
    fn add(&self, a: u64, b: u64) -> impl Future<Output = Result<u64, String>> + Send;
    fn echo(&self, body: Vec<u8>) -> impl Future<Output = Result<Vec<u8>, String>> + Send;
}

#[derive(Clone)]
struct RmifCaller(CalculatorConsumer);

impl RmifCaller {
    fn connect(addr: SocketAddr, lz4: bool) -> Self {
        let client = Client::with_static_providers(ConsumerConfig {
            static_providers: vec![addr],
            timeout: CALL_DEADLINE,
            compression: compression(lz4),
            ..ConsumerConfig::default()
        });
        RmifCaller(client.stub())
    }
}

impl Caller for RmifCaller {
    async fn add(&self, a: u64, b: u64) -> Result<u64, String> {
        self.0.add(a, b).await.map_err(|e| e.to_string())
    }

    async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, String> {
        self.0.echo(body).await.map_err(|e| e.to_string())
    }
}

mod tarpc_bench {
    //! The tarpc peer: the same two calls over `serde_transport` with tokio-serde's Bincode.

    use super::*;
    use tarpc::server::{BaseChannel, Channel};
    use tarpc::tokio_serde::formats::Bincode;
    use tarpc::{client, context, serde_transport};

    #[tarpc::service]
    pub trait Bench {
        async fn add(a: u64, b: u64) -> u64;
        async fn echo(body: Vec<u8>) -> Vec<u8>;
    }

    #[derive(Clone)]
    struct BenchServer;

    impl Bench for BenchServer {
        async fn add(self, _: context::Context, a: u64, b: u64) -> u64 {
            a.wrapping_add(b)
        }

        async fn echo(self, _: context::Context, body: Vec<u8>) -> Vec<u8> {
            body
        }
    }

    /// Serves every connection, each request in its own task, as tarpc's examples do.
    pub async fn serve(listener: TcpListener) {
        let mut incoming = serde_transport::tcp::listen_on(listener, Bincode::default)
            .await
            .expect("tarpc listener");
        while let Some(Ok(transport)) = incoming.next().await {
            let channel = BaseChannel::with_defaults(transport);
            tokio::spawn(
                channel
                    .execute(BenchServer.serve())
                    .for_each(|response| async {
                        tokio::spawn(response);
                    }),
            );
        }
    }

    #[derive(Clone)]
    pub struct TarpcCaller(BenchClient);

    impl TarpcCaller {
        pub async fn connect(addr: SocketAddr) -> Self {
            let transport = serde_transport::tcp::connect(addr, Bincode::default)
                .await
                .expect("connect to tarpc");
            TarpcCaller(BenchClient::new(client::Config::default(), transport).spawn())
        }
    }

    fn context() -> context::Context {
        let mut context = context::current();
        context.deadline = Instant::now() + CALL_DEADLINE;
        context
    }

    impl Caller for TarpcCaller {
        async fn add(&self, a: u64, b: u64) -> Result<u64, String> {
            self.0.add(context(), a, b).await.map_err(|e| e.to_string())
        }

        async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, String> {
            self.0
                .echo(context(), body)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

mod raw {
    //! The floor: a minimal pipelined protocol over one connection, no framework.
    //!
    //! Frames are u32-length-prefixed (`LengthDelimitedCodec`). A request is `id: u64, op: u8,
    //! payload`; a response is `id: u64, payload`. `add`'s payload is two big-endian u64s and its
    //! answer one; `echo`'s payload is the body, answered as is.

    use super::*;

    const OP_ADD: u8 = 0;
    const OP_ECHO: u8 = 1;
    /// `echo` whose body (and answer) is an lz4 block preceded by its size, as rmif sends it.
    const OP_ECHO_LZ4: u8 = 2;
    /// Bodies from this size are compressed in the `-lz4` rows (rmif's threshold there too).
    const LZ4_THRESHOLD: usize = 1024;

    /// Serves every connection with one task that answers requests in order.
    pub async fn serve(listener: TcpListener) {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream));
        }
    }

    async fn serve_connection(stream: TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut requests = FramedRead::new(read, LengthDelimitedCodec::new());
        let mut responses = FramedWrite::new(write, LengthDelimitedCodec::new());
        while let Some(request) = requests.next().await {
            responses.feed(answer(request?)).await?;
            // Answer everything already received before paying for one write system call.
            while let Some(Some(request)) = requests.next().now_or_never() {
                responses.feed(answer(request?)).await?;
            }
            SinkExt::<Bytes>::flush(&mut responses).await?;
        }
        Ok(())
    }

    fn answer(mut request: BytesMut) -> Bytes {
        let id = request.get_u64();
        let op = request.get_u8();
        let mut response = BytesMut::with_capacity(8 + request.len());
        response.put_u64(id);
        match op {
            OP_ADD => {
                let (a, b) = (request.get_u64(), request.get_u64());
                response.put_u64(a.wrapping_add(b));
            }
            OP_ECHO_LZ4 => {
                let body = lz4_flex::decompress_size_prepended(&request).expect("lz4 request");
                response.extend_from_slice(&lz4_flex::compress_prepend_size(&body));
            }
            _ => response.extend_from_slice(&request),
        }
        response.freeze()
    }

    type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<BytesMut>>>>;

    /// The client: callers hand frames to a writer task and wait on a oneshot that a reader task
    /// completes by id.
    #[derive(Clone)]
    pub struct RawCaller {
        next_id: Arc<AtomicU64>,
        pending: Pending,
        outgoing: mpsc::UnboundedSender<Bytes>,
        lz4: bool,
    }

    impl RawCaller {
        pub async fn connect(addr: SocketAddr, lz4: bool) -> Self {
            let stream = TcpStream::connect(addr).await.expect("connect to raw");
            stream.set_nodelay(true).expect("TCP_NODELAY");
            let (read, write) = stream.into_split();
            let pending = Pending::default();
            let (outgoing, queue) = mpsc::unbounded_channel();
            tokio::spawn(write_requests(
                queue,
                FramedWrite::new(write, LengthDelimitedCodec::new()),
            ));
            tokio::spawn(read_responses(
                FramedRead::new(read, LengthDelimitedCodec::new()),
                pending.clone(),
            ));
            RawCaller {
                next_id: Arc::default(),
                pending,
                outgoing,
                lz4,
            }
        }

        async fn call(&self, op: u8, payload: &[u8]) -> Result<BytesMut, String> {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let mut frame = BytesMut::with_capacity(9 + payload.len());
            frame.put_u64(id);
            frame.put_u8(op);
            frame.extend_from_slice(payload);
            let (done, answer) = oneshot::channel();
            self.pending.lock().unwrap().insert(id, done);
            self.outgoing
                .send(frame.freeze())
                .map_err(|_| "connection closed".to_owned())?;
            answer.await.map_err(|_| "connection closed".to_owned())
        }
    }

    async fn write_requests(
        mut queue: mpsc::UnboundedReceiver<Bytes>,
        mut sink: FramedWrite<tokio::net::tcp::OwnedWriteHalf, LengthDelimitedCodec>,
    ) -> std::io::Result<()> {
        while let Some(frame) = queue.recv().await {
            sink.feed(frame).await?;
            // Coalesce whatever other callers queued meanwhile into the same write.
            while let Ok(frame) = queue.try_recv() {
                sink.feed(frame).await?;
            }
            SinkExt::<Bytes>::flush(&mut sink).await?;
        }
        Ok(())
    }

    async fn read_responses(
        mut responses: FramedRead<tokio::net::tcp::OwnedReadHalf, LengthDelimitedCodec>,
        pending: Pending,
    ) {
        while let Some(Ok(mut response)) = responses.next().await {
            let id = response.get_u64();
            if let Some(done) = pending.lock().unwrap().remove(&id) {
                let _ = done.send(response);
            }
        }
        // Fail every waiting caller: dropping their senders wakes them with an error.
        pending.lock().unwrap().clear();
    }

    impl Caller for RawCaller {
        async fn add(&self, a: u64, b: u64) -> Result<u64, String> {
            let mut payload = [0u8; 16];
            payload[..8].copy_from_slice(&a.to_be_bytes());
            payload[8..].copy_from_slice(&b.to_be_bytes());
            let mut answer = self.call(OP_ADD, &payload).await?;
            if answer.len() != 8 {
                return Err(format!("add answer of {} bytes", answer.len()));
            }
            Ok(answer.get_u64())
        }

        async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, String> {
            if self.lz4 && body.len() >= LZ4_THRESHOLD {
                let packed = lz4_flex::compress_prepend_size(&body);
                let answer = self.call(OP_ECHO_LZ4, &packed).await?;
                return lz4_flex::decompress_size_prepended(&answer).map_err(|e| e.to_string());
            }
            Ok(self.call(OP_ECHO, &body).await?.to_vec())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator
// ---------------------------------------------------------------------------------------------

/// The figures of one measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    calls_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

/// Runs `scenario` against a fresh provider process of `system`: a new process and connection
/// per cell, so that no cell inherits another's buffers, caches or backlog.
async fn measure(system: System, scenario: Scenario, options: &Options) -> Sample {
    let provider = ProviderProcess::start(system, scenario.lz4);
    let sample = match system {
        System::Rmif => {
            let caller = RmifCaller::connect(provider.addr, scenario.lz4);
            drive(caller, scenario, options).await
        }
        System::Tarpc => {
            let caller = tarpc_bench::TarpcCaller::connect(provider.addr).await;
            drive(caller, scenario, options).await
        }
        System::Raw => {
            let caller = raw::RawCaller::connect(provider.addr, scenario.lz4).await;
            drive(caller, scenario, options).await
        }
    };
    drop(provider);
    sample
}

/// What one caller task saw inside the measured window.
struct Tally {
    latencies: Histogram<u64>,
    calls: u64,
    errors: u64,
    first_error: Option<String>,
}

/// `scenario.callers` tasks share `caller`; calls that start during the warm-up are not counted.
async fn drive<C: Caller>(caller: C, scenario: Scenario, options: &Options) -> Sample {
    let body = Arc::new(echo_body(match scenario.op {
        Op::Echo(size) => size,
        Op::Add => 0,
    }));
    let measure_from = Instant::now() + options.warmup;
    let measure_until = measure_from + options.duration;
    let tasks: Vec<_> = (0..scenario.callers as u64)
        .map(|worker| {
            let (caller, body) = (caller.clone(), body.clone());
            tokio::spawn(call_loop(
                caller,
                scenario.op,
                worker,
                body,
                measure_from,
                measure_until,
            ))
        })
        .collect();
    let mut latencies = new_histogram();
    let (mut calls, mut errors, mut first_error) = (0, 0, None);
    for task in tasks {
        let tally = task.await.expect("caller task panicked");
        latencies
            .add(&tally.latencies)
            .expect("histograms of equal bounds");
        calls += tally.calls;
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    if let Some(error) = first_error {
        eprintln!("  {errors} calls failed, the first with: {error}");
    }
    Sample {
        calls_per_sec: calls as f64 / options.duration.as_secs_f64(),
        p50_us: latencies.value_at_quantile(0.50) as f64 / 1000.0,
        p99_us: latencies.value_at_quantile(0.99) as f64 / 1000.0,
        errors,
    }
}

/// One caller: call after call until `until`, checking each answer.
async fn call_loop<C: Caller>(
    caller: C,
    op: Op,
    worker: u64,
    body: Arc<Vec<u8>>,
    from: Instant,
    until: Instant,
) -> Tally {
    let mut tally = Tally {
        latencies: new_histogram(),
        calls: 0,
        errors: 0,
        first_error: None,
    };
    let mut i = worker << 32;
    loop {
        let start = Instant::now();
        if start >= until {
            return tally;
        }
        i += 1;
        let outcome = match op {
            Op::Add => caller.add(i, 1).await.and_then(|sum| {
                (sum == i + 1)
                    .then_some(())
                    .ok_or(format!("add({i}, 1) = {sum}"))
            }),
            // Cloning the body is part of every system's call: each takes a Vec<u8> by value.
            Op::Echo(_) => caller.echo(body.to_vec()).await.and_then(|echoed| {
                (echoed == *body)
                    .then_some(())
                    .ok_or("echo changed the body".to_owned())
            }),
        };
        let elapsed = start.elapsed();
        if start < from {
            continue;
        }
        match outcome {
            Ok(()) => {
                tally.calls += 1;
                tally.latencies.saturating_record(elapsed.as_nanos() as u64);
            }
            Err(error) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(error);
            }
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // Nanoseconds from 1 ns to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// A body that looks like typical RPC payload (ASCII, JSON-ish text from a small vocabulary), so
/// that lz4 has something to do, as it would on real traffic. Deterministic across runs.
fn echo_body(len: usize) -> Vec<u8> {
    const VOCABULARY: &str = concat!(
        r#"{"id": "name": "value": "tags":[ ], } true, false, "#,
        r#""alpha", "bravo", "charlie", "delta", 12345, 678, 0.25, "#,
    );
    let words: Vec<&str> = VOCABULARY.split_inclusive(' ').collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut body = Vec::with_capacity(len + 16);
    while body.len() < len {
        // xorshift64: a reproducible stream without another dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        body.extend_from_slice(words[(state % words.len() as u64) as usize].as_bytes());
    }
    body.truncate(len);
    body
}

// ---------------------------------------------------------------------------------------------
// The matrix and the report
// ---------------------------------------------------------------------------------------------

fn bench(options: Options) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    print_machine(&options);
    let jobs = jobs(&options);
    let mut samples: HashMap<(System, &str), Vec<Sample>> = HashMap::new();
    for run in 0..options.runs {
        for (scenario, systems) in &jobs {
            // Rotate the systems' order each run so that none always goes first or last.
            let mut order = systems.clone();
            let shift = run % order.len();
            order.rotate_left(shift);
            for system in order {
                let sample = runtime.block_on(measure(system, *scenario, &options));
                eprintln!(
                    "run {}/{} {:<13} {:<5} {:>10.0} calls/s  p50 {:>8.1} µs  p99 {:>8.1} µs",
                    run + 1,
                    options.runs,
                    scenario.name,
                    system.name(),
                    sample.calls_per_sec,
                    sample.p50_us,
                    sample.p99_us
                );
                samples
                    .entry((system, scenario.name))
                    .or_default()
                    .push(sample);
            }
        }
    }
    print_table(&options, &samples);
    let failed: u64 = samples.values().flatten().map(|s| s.errors).sum();
    if failed > 0 {
        eprintln!("rpc bench: {failed} calls failed");
        std::process::exit(1);
    }
}

/// The scenarios to run and, for each, the systems to run it on: a system without compression
/// runs an `-lz4` scenario as its uncompressed twin, once.
fn jobs(options: &Options) -> Vec<(Scenario, Vec<System>)> {
    let mut jobs: Vec<(Scenario, Vec<System>)> = Vec::new();
    for scenario in &options.scenarios {
        for &system in &options.systems {
            let effective = scenario.effective_for(system);
            match jobs.iter_mut().find(|(s, _)| *s == effective) {
                Some((_, systems)) if systems.contains(&system) => {}
                Some((_, systems)) => systems.push(system),
                None => jobs.push((effective, vec![system])),
            }
        }
    }
    jobs
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The median of each figure of `system` in `scenario`, if it was measured.
fn figures(
    samples: &HashMap<(System, &str), Vec<Sample>>,
    system: System,
    scenario: Scenario,
) -> Option<Sample> {
    let runs = samples.get(&(system, scenario.effective_for(system).name))?;
    Some(Sample {
        calls_per_sec: median(runs.iter().map(|s| s.calls_per_sec)),
        p50_us: median(runs.iter().map(|s| s.p50_us)),
        p99_us: median(runs.iter().map(|s| s.p99_us)),
        errors: runs.iter().map(|s| s.errors).sum(),
    })
}

fn print_machine(options: &Options) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned()))
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map_or_else(|| "rustc: unknown".to_owned(), |v| v.trim().to_owned());
    println!("machine: {cpu}, {cores} cores; {rustc}");
    println!(
        "{} run(s) of {:.1} s warm-up + {:.1} s measured per cell; medians across runs{}",
        options.runs,
        options.warmup.as_secs_f64(),
        options.duration.as_secs_f64(),
        if options.smoke {
            " (smoke test, not a benchmark: pass --bench)"
        } else {
            ""
        }
    );
    println!();
}

fn print_table(options: &Options, samples: &HashMap<(System, &str), Vec<Sample>>) {
    let rate =
        |s: Option<Sample>| s.map_or("–".to_owned(), |s| format!("{:.0}", s.calls_per_sec));
    let ratio = |a: Option<Sample>, b: Option<Sample>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a.calls_per_sec / b.calls_per_sec),
        _ => "–".to_owned(),
    };
    let latency = |s: Option<Sample>| {
        s.map_or("–".to_owned(), |s| {
            format!("{:.0} / {:.0}", s.p50_us, s.p99_us)
        })
    };
    println!(
        "| scenario | rmif calls/s | tarpc calls/s | raw calls/s | rmif/tarpc | rmif/raw \
         | rmif p50/p99 µs | tarpc p50/p99 µs | raw p50/p99 µs |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for scenario in &options.scenarios {
        let [rmif, tarpc, raw] = System::ALL.map(|system| {
            options
                .systems
                .contains(&system)
                .then(|| figures(samples, system, *scenario))
                .flatten()
        });
        let name = if scenario.lz4 {
            format!("{} ¹", scenario.name)
        } else {
            scenario.name.to_owned()
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
            rate(rmif),
            rate(tarpc),
            rate(raw),
            ratio(rmif, tarpc),
            ratio(rmif, raw),
            latency(rmif),
            latency(tarpc),
            latency(raw),
        );
    }
    if options.scenarios.iter().any(|s| s.lz4) {
        println!();
        println!(
            "¹ lz4 on requests and responses of rmif and raw (threshold 1024 B); tarpc does not \
             compress, so its figures repeat the uncompressed row."
        );
    }
}
