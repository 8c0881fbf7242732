//! The load generator: caller tasks sharing one client, call after call, every answer checked
//! and every call's latency recorded.

use std::sync::Arc;
use std::time::Instant;

use rmif_bench::cpu::cpu_ms;
use rmif_bench::measure::{Sample, Tally, Window};
use rmif_bench::options::Timing;

use crate::caller::Caller;
use crate::provider::{ProviderProcess, Serving};
use crate::scenario::{Op, Scenario};
use crate::{System, raw, rmif, tarpc};

/// What one cell measured.
pub struct Cell {
    pub sample: Sample,
    /// CPU time per successful call over the measured window, in µs: of the provider process
    /// and of this one (the consumer).
    pub provider_cpu_us: f64,
    pub consumer_cpu_us: f64,
}

/// Runs `scenario` against a fresh provider process of `system`: a new process and connections
/// per cell, so that no cell inherits another's buffers, caches or backlog.
pub async fn measure(system: System, scenario: Scenario, timing: &Timing) -> Cell {
    let serving = Serving {
        lz4: scenario.lz4,
        handler: scenario.handler,
    };
    let provider = ProviderProcess::start(system, serving);
    let (addr, lz4, pid) = (provider.addr, scenario.lz4, provider.pid());
    let cell = match system {
        System::Rmif => {
            let clients = connect(
                scenario,
                || async move { rmif::RmifCaller::connect(addr, lz4) },
            );
            drive(clients.await, pid, scenario, timing).await
        }
        System::Tarpc => {
            let clients = connect(scenario, || tarpc::TarpcCaller::connect(addr));
            drive(clients.await, pid, scenario, timing).await
        }
        System::Raw => {
            let clients = connect(scenario, || raw::RawCaller::connect(addr, lz4));
            drive(clients.await, pid, scenario, timing).await
        }
    };
    drop(provider);
    cell
}

/// `scenario.connections` clients, each with a connection of its own.
async fn connect<C, F>(scenario: Scenario, client: impl Fn() -> F) -> Vec<C>
where
    F: std::future::Future<Output = C>,
{
    let mut clients = Vec::with_capacity(scenario.connections);
    for _ in 0..scenario.connections {
        clients.push(client().await);
    }
    clients
}

/// `scenario.callers` tasks per client; calls that start during the warm-up are not counted.
/// The CPU time of both processes is read when the measured window opens and closes.
async fn drive<C: Caller>(
    clients: Vec<C>,
    provider_pid: u32,
    scenario: Scenario,
    timing: &Timing,
) -> Cell {
    let body = Arc::new(echo_body(match scenario.op {
        Op::Echo(size) | Op::EchoBytes(size) => size,
        Op::Add => 0,
    }));
    let window = Window::after(timing.warmup, timing.duration);
    let callers = scenario.callers * clients.len();
    let tasks: Vec<_> = (0..callers as u64)
        .map(|worker| {
            let caller = clients[worker as usize % clients.len()].clone();
            let body = body.clone();
            tokio::spawn(call_loop(caller, scenario.op, worker, body, window))
        })
        .collect();
    let cpu = tokio::spawn(async move {
        let read = || (cpu_ms(provider_pid), cpu_ms(0));
        tokio::time::sleep_until(window.start().into()).await;
        let before = read();
        tokio::time::sleep_until((window.start() + window.duration()).into()).await;
        let after = read();
        let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map_or(f64::NAN, |(a, b)| b - a);
        (delta(before.0, after.0), delta(before.1, after.1))
    });
    let mut tally = Tally::new();
    for task in tasks {
        tally.merge(task.await.expect("caller task panicked"));
    }
    if let Some(failures) = tally.failures("calls") {
        eprintln!("  {failures}");
    }
    let sample = tally.sample(&window);
    let (provider_ms, consumer_ms) = cpu.await.expect("CPU reader");
    let calls = sample.per_sec * window.duration().as_secs_f64();
    Cell {
        sample,
        provider_cpu_us: provider_ms * 1000.0 / calls,
        consumer_cpu_us: consumer_ms * 1000.0 / calls,
    }
}

/// One caller: call after call until the window closes, checking each answer.
async fn call_loop<C: Caller>(
    caller: C,
    op: Op,
    worker: u64,
    body: Arc<Vec<u8>>,
    window: Window,
) -> Tally {
    let mut tally = Tally::new();
    let shared = bytes::Bytes::copy_from_slice(&body);
    // Each caller adds its own range of numbers, so that a mixed-up answer shows.
    let mut i = worker << 32;
    loop {
        let start = Instant::now();
        if window.is_over(start) {
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
            Op::EchoBytes(_) => caller.echo_bytes(shared.clone()).await.and_then(|echoed| {
                (echoed == *body)
                    .then_some(())
                    .ok_or("echo changed the body".to_owned())
            }),
        };
        tally.record(&window, start, outcome);
    }
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
