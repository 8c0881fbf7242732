//! The scenario matrix: which calls, how many callers, with or without compression, and which
//! systems run which scenario.

use crate::System;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Add,
    /// An echo of a body of this many bytes.
    Echo(usize),
    /// The same echo with a shared `bytes::Bytes` body (no copy per call at the caller).
    EchoBytes(usize),
}

/// What the provider's `add` handler does before it answers (see `backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Handler {
    /// Nothing: it completes on its first poll.
    Immediate,
    /// It awaits the provider process's backend task.
    Awaits,
    /// It holds a lock shared by every call while it awaits the backend task.
    Locks,
    /// It calls a second provider of the same system (consumer, A, B).
    Chain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scenario {
    pub name: &'static str,
    pub op: Op,
    /// Consumer connections (clients), each with `callers` caller tasks.
    pub connections: usize,
    /// Caller tasks sharing each connection.
    pub callers: usize,
    pub lz4: bool,
    /// What the provider's `add` handler does before it answers.
    pub handler: Handler,
}

/// Every scenario, in table order. The `-lz4` ones compress bodies of 1 KiB and more; in the
/// `add-await` ones the provider's handler awaits an answer from another task, in the
/// `add-lock` ones a lock shared by all calls, in the `chain` ones another provider.
pub const SCENARIOS: [Scenario; 18] = [
    Scenario::new("add-1", Op::Add, 1, false),
    Scenario::new("add-16", Op::Add, 16, false),
    Scenario::new("add-256", Op::Add, 256, false),
    Scenario::new("echo-1k", Op::Echo(1024), 16, false),
    Scenario::new("echo-1k-lz4", Op::Echo(1024), 16, true),
    Scenario::new("echo-64k", Op::Echo(64 * 1024), 16, false),
    Scenario::new("echo-64k-lz4", Op::Echo(64 * 1024), 16, true),
    Scenario::new("echo-64k-bytes", Op::EchoBytes(64 * 1024), 16, false),
    Scenario::awaiting("add-await-1", 1, Handler::Awaits),
    Scenario::awaiting("add-await-16", 16, Handler::Awaits),
    Scenario::awaiting("add-await-256", 256, Handler::Awaits),
    Scenario::awaiting("add-lock-1", 1, Handler::Locks),
    Scenario::awaiting("add-lock-16", 16, Handler::Locks),
    Scenario::awaiting("add-lock-256", 256, Handler::Locks),
    Scenario::awaiting("chain-1", 1, Handler::Chain),
    Scenario::awaiting("chain-16", 16, Handler::Chain),
    Scenario::awaiting("chain-256", 256, Handler::Chain),
    Scenario::awaiting("add-await-100x4", 4, Handler::Awaits).on_connections(100),
];

impl Scenario {
    const fn new(name: &'static str, op: Op, callers: usize, lz4: bool) -> Self {
        Scenario {
            name,
            op,
            connections: 1,
            callers,
            lz4,
            handler: Handler::Immediate,
        }
    }

    /// `add` by `callers` callers, its handler awaiting as `handler` says.
    const fn awaiting(name: &'static str, callers: usize, handler: Handler) -> Self {
        Scenario {
            name,
            op: Op::Add,
            connections: 1,
            callers,
            lz4: false,
            handler,
        }
    }

    /// The same calls from `connections` consumer connections, each with its own callers.
    const fn on_connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// The scenario actually run for `system`: systems without compression run the
    /// uncompressed twin of an `-lz4` scenario, and systems whose contract has no `Bytes`
    /// echo run the `Vec<u8>` twin of a `-bytes` one.
    pub fn effective_for(self, system: System) -> Scenario {
        if let Op::EchoBytes(len) = self.op
            && system != System::Rmif
        {
            return SCENARIOS
                .into_iter()
                .find(|s| {
                    s.op == Op::Echo(len)
                        && s.callers == self.callers
                        && !s.lz4
                        && s.handler == Handler::Immediate
                })
                .expect("every bytes scenario has a Vec<u8> twin");
        }
        if self.lz4 && !system.compresses() {
            SCENARIOS
                .into_iter()
                .find(|s| {
                    s.op == self.op
                        && s.callers == self.callers
                        && !s.lz4
                        && s.handler == Handler::Immediate
                })
                .expect("every lz4 scenario has an uncompressed twin")
        } else {
            self
        }
    }
}

/// The scenarios to run and, for each, the systems to run it on: a system without compression
/// runs an `-lz4` scenario as its uncompressed twin, once.
pub fn jobs(scenarios: &[Scenario], systems: &[System]) -> Vec<(Scenario, Vec<System>)> {
    let mut jobs: Vec<(Scenario, Vec<System>)> = Vec::new();
    for scenario in scenarios {
        for &system in systems {
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
