//! The provider process: this binary run again with `--serve SYSTEM`, which serves the two calls
//! on a loopback port and announces its address; and the parent's handle on it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Child;

use rmif_bench::helper;
use tokio::net::TcpListener;

use crate::backend::Backend;
use crate::scenario::Handler;
use crate::{System, raw, rmif, tarpc};

/// How the provider process serves: compressing as the `-lz4` scenarios do, and with `add`
/// handlers that do what `handler` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    pub lz4: bool,
    pub handler: Handler,
}

/// The provider process's `main`: serves `system` until the parent goes away.
pub fn serve(system: System, serving: Serving) {
    helper::exit_with_parent();
    rmif_bench::runtime().block_on(async move {
        let backend = match serving.handler {
            Handler::Immediate => None,
            Handler::Awaits => Some(Backend::task()),
            Handler::Locks => Some(Backend::lock()),
            Handler::Chain => Some(downstream(system).await),
        };
        match system {
            System::Rmif => {
                let server = rmif::serve(serving.lz4, backend).await;
                helper::announce(server.local_addr());
                std::future::pending::<()>().await;
            }
            System::Tarpc => {
                let listener = bind_loopback().await;
                helper::announce(listener.local_addr().expect("local addr"));
                tarpc::serve(listener, backend).await;
            }
            System::Raw => {
                let listener = bind_loopback().await;
                helper::announce(listener.local_addr().expect("local addr"));
                match backend {
                    Some(backend) => raw::serve_spawning(listener, backend).await,
                    None => raw::serve(listener).await,
                }
            }
        }
    });
}

/// Starts the second provider of a chain in this process (same system, `add` answered at once)
/// and returns a client of it.
async fn downstream(system: System) -> Backend {
    match system {
        System::Rmif => {
            let server = rmif::serve(false, None).await;
            let caller = rmif::RmifCaller::connect(server.local_addr(), false);
            // The server runs as long as the process: its handle is not dropped.
            std::mem::forget(server);
            Backend::downstream(caller)
        }
        System::Tarpc => {
            let listener = bind_loopback().await;
            let addr = listener.local_addr().expect("local addr");
            tokio::spawn(tarpc::serve(listener, None));
            Backend::downstream(tarpc::TarpcCaller::connect(addr).await)
        }
        System::Raw => {
            let listener = bind_loopback().await;
            let addr = listener.local_addr().expect("local addr");
            tokio::spawn(raw::serve(listener));
            Backend::downstream(raw::RawCaller::connect(addr, false).await)
        }
    }
}

async fn bind_loopback() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind 127.0.0.1")
}

/// A provider child process; dropping it closes its stdin, which ends it.
pub struct ProviderProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl ProviderProcess {
    /// The provider process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start(system: System, serving: Serving) -> ProviderProcess {
        let mut command = helper::command(["--serve", system.name()]);
        if serving.lz4 {
            command.arg("--lz4");
        }
        command.args(["--handler", handler_name(serving.handler)]);
        let mut child = command.spawn().expect("start the provider process");
        let line = helper::announcement(&mut child);
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

fn handler_name(handler: Handler) -> &'static str {
    match handler {
        Handler::Immediate => "immediate",
        Handler::Awaits => "awaits",
        Handler::Locks => "locks",
        Handler::Chain => "chain",
    }
}
