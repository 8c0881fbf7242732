//! Byte payloads travel as MessagePack `bin` (one byte on the wire per byte, read in one
//! piece), not as arrays of integers: each kind of byte container, as an argument, a result and a
//! stream item, checked on the bytes a provider receives and sends.

// The generated code names `::rmif_core`; here rmif-core is depended on as `renamed_core` (see
// renamed_crate.rs), so it is brought in under its usual name too.
extern crate renamed_core as rmif_core;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use rmif_core::{
    Client, ConsumerConfig, Dispatch, IncomingRequest, ProviderConfig, Server, ServerHandle,
    ServiceDescriptor, ServiceProvider, Streaming,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

#[derive(Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum BlobError {
    #[error(transparent)]
    Rpc(#[from] rmif_core::Error),
}

/// An alias the macro cannot see through.
pub type Blob = Vec<u8>;

/// A struct whose byte field asks serde for bytes itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tagged {
    pub tag: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

#[rmif_core::service(name = "test.Blobs")]
pub trait Blobs {
    async fn vec(&self, body: Vec<u8>) -> Result<Vec<u8>, BlobError>;
    async fn boxed(&self, body: Box<[u8]>) -> Result<Box<[u8]>, BlobError>;
    async fn bytes(&self, body: Bytes) -> Result<Bytes, BlobError>;
    async fn byte_buf(&self, body: ByteBuf) -> Result<ByteBuf, BlobError>;
    async fn alias(&self, body: Blob) -> Result<Blob, BlobError>;
    async fn tagged(&self, body: Tagged) -> Result<Tagged, BlobError>;
    /// Streams `body` back in chunks of two bytes.
    async fn chunks(&self, body: Vec<u8>) -> Result<Streaming<Vec<u8>, BlobError>, BlobError>;
}

struct Echo;

impl Blobs for Echo {
    async fn vec(&self, body: Vec<u8>) -> Result<Vec<u8>, BlobError> {
        Ok(body)
    }

    async fn boxed(&self, body: Box<[u8]>) -> Result<Box<[u8]>, BlobError> {
        Ok(body)
    }

    async fn bytes(&self, body: Bytes) -> Result<Bytes, BlobError> {
        Ok(body)
    }

    async fn byte_buf(&self, body: ByteBuf) -> Result<ByteBuf, BlobError> {
        Ok(body)
    }

    async fn alias(&self, body: Blob) -> Result<Blob, BlobError> {
        Ok(body)
    }

    async fn tagged(&self, body: Tagged) -> Result<Tagged, BlobError> {
        Ok(body)
    }

    async fn chunks(&self, body: Vec<u8>) -> Result<Streaming<Vec<u8>, BlobError>, BlobError> {
        let chunks: Vec<_> = body.chunks(2).map(|chunk| Ok(chunk.to_vec())).collect();
        Ok(futures_util::stream::iter(chunks).boxed())
    }
}

/// Bodies as the provider saw them: each request's arguments, then each reply (or stream item).
#[derive(Clone, Default)]
struct Wire(Arc<Mutex<Vec<Vec<u8>>>>);

impl Wire {
    fn push(&self, body: &[u8]) {
        self.0.lock().unwrap().push(body.to_vec());
    }

    fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Serves the generated provider, recording every body in and out.
struct Recording {
    inner: BlobsProvider,
    wire: Wire,
}

impl ServiceProvider for Recording {
    fn descriptor(&self) -> &'static ServiceDescriptor {
        self.inner.descriptor()
    }

    fn dispatch(&self, method_id: u32, request: IncomingRequest) -> Dispatch {
        self.wire.push(&request.body);
        let wire = self.wire.clone();
        match self.inner.dispatch(method_id, request) {
            Dispatch::Unary(running) => Dispatch::Unary(Box::pin(async move {
                let reply = running.await;
                wire.push(&reply.body);
                reply
            })),
            Dispatch::Stream(opening) => Dispatch::Stream(Box::pin(async move {
                let items = opening.await?;
                Ok(items.inspect(move |reply| wire.push(&reply.body)).boxed())
            })),
            other => other,
        }
    }
}

async fn serve() -> (ServerHandle, BlobsConsumer, Wire) {
    let wire = Wire::default();
    let server = Server::builder(ProviderConfig::loopback())
        .add_service(Recording {
            inner: BlobsProvider::new(Echo),
            wire: wire.clone(),
        })
        .serve()
        .await
        .unwrap();
    let config = ConsumerConfig {
        static_providers: vec![server.local_addr()],
        ..ConsumerConfig::default()
    };
    let stub = Client::with_static_providers(config).stub();
    (server, stub, wire)
}

/// `bin 8` of `bytes`: marker 0xc4, the length, the bytes.
fn bin(bytes: &[u8]) -> Vec<u8> {
    let mut encoded = vec![0xc4, u8::try_from(bytes.len()).unwrap()];
    encoded.extend_from_slice(bytes);
    encoded
}

/// An argument tuple of one value: a fixarray of length 1, then the value.
fn one_argument(value: Vec<u8>) -> Vec<u8> {
    let mut encoded = vec![0x91];
    encoded.extend(value);
    encoded
}

const PAYLOAD: &[u8] = b"\x00\x7f\x80\xff";

#[tokio::test]
async fn each_kind_of_byte_container_travels_as_bin_both_ways() {
    let (server, stub, wire) = serve().await;
    let request = one_argument(bin(PAYLOAD));
    let reply = bin(PAYLOAD);

    assert_eq!(stub.vec(PAYLOAD.to_vec()).await.unwrap(), PAYLOAD);
    assert_eq!(wire.take(), [request.clone(), reply.clone()], "Vec<u8>");

    assert_eq!(&*stub.boxed(PAYLOAD.into()).await.unwrap(), PAYLOAD);
    assert_eq!(wire.take(), [request.clone(), reply.clone()], "Box<[u8]>");

    let bytes = Bytes::from_static(PAYLOAD);
    assert_eq!(stub.bytes(bytes).await.unwrap(), PAYLOAD);
    assert_eq!(
        wire.take(),
        [request.clone(), reply.clone()],
        "bytes::Bytes"
    );

    let buf = ByteBuf::from(PAYLOAD);
    assert_eq!(stub.byte_buf(buf).await.unwrap(), PAYLOAD);
    assert_eq!(wire.take(), [request.clone(), reply.clone()], "ByteBuf");

    assert_eq!(stub.alias(PAYLOAD.to_vec()).await.unwrap(), PAYLOAD);
    assert_eq!(wire.take(), [request, reply], "an alias of Vec<u8>");
    server.shutdown().await;
}

#[tokio::test]
async fn a_serde_bytes_field_travels_as_bin() {
    let (server, stub, wire) = serve().await;
    let tagged = Tagged {
        tag: "t".into(),
        data: PAYLOAD.to_vec(),
    };
    assert_eq!(stub.tagged(tagged.clone()).await.unwrap(), tagged);
    // A struct travels as a map: fixmap 2, "tag" => "t", "data" => the bytes.
    let mut encoded = vec![0x82, 0xa3, b't', b'a', b'g', 0xa1, b't'];
    encoded.extend([0xa4, b'd', b'a', b't', b'a']);
    encoded.extend(bin(PAYLOAD));
    assert_eq!(wire.take(), [one_argument(encoded.clone()), encoded]);
    server.shutdown().await;
}

#[tokio::test]
async fn stream_items_travel_as_bin() {
    let (server, stub, wire) = serve().await;
    let items: Vec<Vec<u8>> = stub
        .chunks(PAYLOAD.to_vec())
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, [&PAYLOAD[..2], &PAYLOAD[2..]]);
    assert_eq!(
        wire.take(),
        [
            one_argument(bin(PAYLOAD)),
            bin(&PAYLOAD[..2]),
            bin(&PAYLOAD[2..])
        ]
    );
    server.shutdown().await;
}
