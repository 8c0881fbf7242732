//! tarpc: the same two calls as a `#[tarpc::service]` over `serde_transport::tcp` with
//! tokio-serde's Bincode, default configurations, each request in its own task as tarpc's
//! examples do. It runs as shipped: Nagle's algorithm stays on, which is faster for tarpc here.

use std::net::SocketAddr;
use std::time::Instant;

use futures_util::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{client, context, serde_transport};
use tokio::net::TcpListener;

use crate::CALL_DEADLINE;
use crate::backend::Backend;
use crate::caller::Caller;

#[tarpc::service]
pub trait Bench {
    async fn add(a: u64, b: u64) -> u64;
    async fn echo(body: Vec<u8>) -> Vec<u8>;
}

/// The server; with a backend (the `add-await` and `chain` scenarios), `add` awaits it.
#[derive(Clone)]
struct BenchServer(Option<Backend>);

impl Bench for BenchServer {
    async fn add(self, _: context::Context, a: u64, b: u64) -> u64 {
        match &self.0 {
            Some(backend) => backend.add(a, b).await,
            None => a.wrapping_add(b),
        }
    }

    async fn echo(self, _: context::Context, body: Vec<u8>) -> Vec<u8> {
        body
    }
}

/// Serves every connection, each request in its own task.
pub async fn serve(listener: TcpListener, backend: Option<Backend>) {
    let mut incoming = serde_transport::tcp::listen_on(listener, Bincode::default)
        .await
        .expect("tarpc listener");
    while let Some(Ok(transport)) = incoming.next().await {
        let channel = BaseChannel::with_defaults(transport);
        tokio::spawn(
            channel
                .execute(BenchServer(backend.clone()).serve())
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
