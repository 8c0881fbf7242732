//! rmif: `CalculatorProvider::new(Arithmetic::new())` served by `rmif_core::Server`, called through a
//! `CalculatorConsumer` stub, default settings but for the call deadline and, in the `-lz4`
//! scenarios, compression on both sides. In the `add-await` scenarios the provider serves
//! [`Backed`] instead, whose `add` awaits the backend (a task, or in `chain` a second provider).

use std::net::{Ipv4Addr, SocketAddr};

use rmif_core::{
    Client, Compression, CompressionPolicy, ConsumerConfig, ProviderConfig, Server, ServerHandle,
};
use rmif_suite::calculator::{
    Arithmetic, CalcError, Calculator, CalculatorConsumer, CalculatorProvider,
};

use crate::CALL_DEADLINE;
use crate::backend::Backend;
use crate::caller::Caller;

/// Serves the calculator on a loopback port, its `add` answered by `backend` if given; the
/// server runs until the process ends.
pub async fn serve(lz4: bool, backend: Option<Backend>) -> ServerHandle {
    let config = ProviderConfig {
        bind: Ipv4Addr::LOCALHOST.into(),
        port: 0,
        compression: compression(lz4),
        ..ProviderConfig::loopback()
    };
    let builder = Server::builder(config);
    let builder = match backend {
        Some(backend) => builder.add_service(CalculatorProvider::new(Backed {
            backend,
            arithmetic: Arithmetic::new(),
        })),
        None => builder.add_service(CalculatorProvider::new(Arithmetic::new())),
    };
    builder.serve().await.expect("rmif server")
}

/// The calculator whose `add` awaits the backend; the other calls answer at once.
#[derive(Clone)]
pub struct Backed {
    backend: Backend,
    arithmetic: Arithmetic,
}

impl Calculator for Backed {
    async fn add(&self, a: u64, b: u64) -> Result<u64, CalcError> {
        Ok(self.backend.add(a, b).await)
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        self.arithmetic.div(a, b).await
    }

    async fn echo(&self, body: Vec<u8>) -> Result<Vec<u8>, CalcError> {
        self.arithmetic.echo(body).await
    }

    async fn echo_bytes(&self, body: bytes::Bytes) -> Result<bytes::Bytes, CalcError> {
        self.arithmetic.echo_bytes(body).await
    }

    async fn accumulate(&self, amount: u64) -> Result<u64, CalcError> {
        self.arithmetic.accumulate(amount).await
    }
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

#[derive(Clone)]
pub struct RmifCaller(CalculatorConsumer);

impl RmifCaller {
    pub fn connect(addr: SocketAddr, lz4: bool) -> Self {
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

    async fn echo_bytes(&self, body: bytes::Bytes) -> Result<bytes::Bytes, String> {
        self.0.echo_bytes(body).await.map_err(|e| e.to_string())
    }
}
