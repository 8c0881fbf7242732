//! Turning a provider's answer frame into the method's result: the value, the method's own
//! error, or the rmif [`Error`] its status stands for.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;

use crate::Error;
use crate::compress::decompress;
use crate::protocol::{Frame, Status};
use crate::serialize::Serialization;

/// Decodes an answer frame of `service.method` from `endpoint`: the value for status `Ok`, the
/// method's error for `AppError`, an [`Error`] for the others.
pub(crate) fn decode_answer<T, E>(
    frame: &Frame,
    max_size: usize,
    service: &str,
    method: &str,
    endpoint: SocketAddr,
) -> Result<T, E>
where
    T: DeserializeOwned,
    E: DeserializeOwned + From<Error>,
{
    let body = decompress(frame.header.compression, frame.body.clone(), max_size)
        .map_err(|e| Error::Protocol(format!("answer from {endpoint}: {e}")))?;
    let format = || {
        Serialization::from_id(frame.header.serialization).ok_or_else(|| {
            Error::Protocol(format!(
                "answer from {endpoint} uses unknown serialization id {}",
                frame.header.serialization
            ))
        })
    };
    let message = || String::from_utf8_lossy(&body).into_owned();
    let error = match Status::from_u8(frame.header.status) {
        Some(Status::Ok) => return Ok(format()?.decode::<T>(&body)?),
        Some(Status::AppError) => {
            return Err(format()?.decode::<E>(&body).unwrap_or_else(|e| E::from(e)));
        }
        Some(Status::UnknownService) => Error::UnknownService {
            service: service.to_owned(),
            endpoint: endpoint.to_string(),
        },
        Some(Status::UnknownMethod) => Error::UnknownMethod {
            service: service.to_owned(),
            method: method.to_owned(),
            endpoint: endpoint.to_string(),
        },
        Some(Status::BadRequest) => Error::BadRequest {
            service: service.to_owned(),
            method: method.to_owned(),
            reason: message(),
        },
        Some(Status::DeadlineExceeded) => Error::Timeout {
            service: service.to_owned(),
            method: method.to_owned(),
            timeout_ms: 0,
        },
        Some(Status::Internal) => Error::Remote {
            service: service.to_owned(),
            method: method.to_owned(),
            reason: message(),
        },
        Some(Status::Overloaded) => Error::Overloaded {
            endpoint: endpoint.to_string(),
        },
        Some(Status::ShuttingDown) => Error::ShuttingDown {
            endpoint: endpoint.to_string(),
        },
        Some(Status::Rejected) => Error::Rejected {
            service: service.to_owned(),
            method: method.to_owned(),
            reason: format!("provider {endpoint} refused the call: {}", message()),
        },
        None => Error::Protocol(format!(
            "answer from {endpoint} has unknown status {}",
            frame.header.status
        )),
    };
    Err(E::from(error))
}

/// The error for an answer that says the call did not run (it may run on another provider).
pub(crate) fn refusal_error(frame: &Frame, endpoint: SocketAddr) -> Option<Error> {
    match Status::from_u8(frame.header.status) {
        Some(Status::Overloaded) => Some(Error::Overloaded {
            endpoint: endpoint.to_string(),
        }),
        Some(Status::ShuttingDown) => Some(Error::ShuttingDown {
            endpoint: endpoint.to_string(),
        }),
        _ => None,
    }
}
