//! A provider's handlers: decode the argument tuple, run the method, encode its answer, each
//! boxed once into the [`Dispatch`] the server drives.

use std::future::Future;

use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::ToWire;
use crate::protocol::Status;
use crate::serialize::Serialization;
use crate::service::{Dispatch, IncomingRequest, Reply, Streaming};

fn encode<V: Serialize + ?Sized>(format: Serialization, status: Status, value: &V) -> Reply {
    let mut body = BytesMut::new();
    match format.encode(value, &mut body) {
        Ok(()) => Reply { status, body },
        Err(error) => Reply::message(
            Status::Internal,
            format!("the provider could not serialize the answer: {error}"),
        ),
    }
}

/// A method's value in its wire form (byte containers as bytes), or its error as it is.
fn encode_result<T, E>(format: Serialization, result: Result<T, E>) -> Reply
where
    T: Serialize + 'static,
    E: Serialize,
{
    match result {
        Ok(value) => encode(format, Status::Ok, &ToWire(&value)),
        Err(error) => encode(format, Status::AppError, &error),
    }
}

fn decode_args<A: DeserializeOwned>(request: &IncomingRequest) -> Result<A, Reply> {
    request.format.decode::<A>(&request.body).map_err(|error| {
        Reply::message(
            Status::BadRequest,
            format!("the arguments do not decode as this method's parameters: {error}"),
        )
    })
}

/// Dispatches a unary method: decode the argument tuple, run, encode the result.
pub fn unary<A, T, E, F, Fut>(request: IncomingRequest, handler: F) -> Dispatch
where
    A: DeserializeOwned,
    T: Serialize + 'static,
    E: Serialize,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    match decode_args::<A>(&request) {
        Ok(args) => {
            let format = request.format;
            let running = handler(args);
            Dispatch::Unary(Box::pin(
                async move { encode_result(format, running.await) },
            ))
        }
        Err(reply) => Dispatch::Immediate(reply),
    }
}

/// Dispatches a one-way method: decode, run, discard the result (errors are logged).
pub fn oneway<A, E, F, Fut>(request: IncomingRequest, handler: F) -> Dispatch
where
    A: DeserializeOwned,
    E: std::fmt::Debug,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    match decode_args::<A>(&request) {
        Ok(args) => {
            let running = handler(args);
            Dispatch::OneWay(Box::pin(async move {
                if let Err(error) = running.await {
                    tracing::warn!(?error, "one-way call failed");
                }
            }))
        }
        Err(reply) => {
            tracing::warn!(reason = %String::from_utf8_lossy(&reply.body), "one-way call rejected");
            Dispatch::OneWay(Box::pin(async {}))
        }
    }
}

/// Dispatches a server-streaming method: decode, open the stream, encode each item.
pub fn server_stream<A, T, E, F, Fut>(request: IncomingRequest, handler: F) -> Dispatch
where
    A: DeserializeOwned,
    T: Serialize + Send + 'static,
    E: Serialize + Send + 'static,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = Result<Streaming<T, E>, E>> + Send + 'static,
{
    match decode_args::<A>(&request) {
        Ok(args) => {
            let format = request.format;
            let opening = handler(args);
            Dispatch::Stream(Box::pin(async move {
                match opening.await {
                    Ok(items) => Ok(items.map(move |item| encode_result(format, item)).boxed()),
                    Err(error) => Err(encode(format, Status::AppError, &error)),
                }
            }))
        }
        Err(reply) => Dispatch::Immediate(reply),
    }
}
