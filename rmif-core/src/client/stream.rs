//! The consumer's end of a server stream: decodes items, grants the provider more credit as
//! items are consumed, and cancels the stream on the provider when dropped early.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::answer::decode_answer;
use super::connection::ClientConnection;
use crate::Error;
use crate::protocol::{Frame, FrameHeader, FrameKind, INITIAL_STREAM_WINDOW, OutFrame, Status};

/// Items consumed before the consumer grants that many more to the provider.
const CREDIT_BATCH: u32 = INITIAL_STREAM_WINDOW / 2;

/// Items of one server stream as they arrive on a connection.
pub(crate) struct RemoteStream<T, E> {
    connection: Arc<ClientConnection>,
    id: u64,
    items: mpsc::Receiver<Frame>,
    consumed: u32,
    done: bool,
    service: String,
    method: &'static str,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> RemoteStream<T, E> {
    pub(crate) fn new(
        connection: Arc<ClientConnection>,
        id: u64,
        items: mpsc::Receiver<Frame>,
        service: String,
        method: &'static str,
    ) -> Self {
        RemoteStream {
            connection,
            id,
            items,
            consumed: 0,
            done: false,
            service,
            method,
            _types: PhantomData,
        }
    }

    fn grant_credit(&mut self) {
        self.consumed += 1;
        if self.consumed >= CREDIT_BATCH {
            let credit = self.consumed.to_be_bytes();
            self.connection.send_now(&OutFrame::new(
                FrameHeader::new(FrameKind::StreamCredit, self.id),
                &credit,
            ));
            self.consumed = 0;
        }
    }
}

impl<T, E> Stream for RemoteStream<T, E>
where
    T: DeserializeOwned,
    E: DeserializeOwned + From<Error>,
{
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let frame = match this.items.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(frame)) => frame,
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(Some(Err(E::from(this.connection.lost()))));
            }
        };
        let peer_limit = this.connection.max_frame_size();
        let endpoint = this.connection.peer();
        match frame.header.kind {
            FrameKind::StreamEnd => {
                this.done = true;
                if frame.header.status == Status::Ok as u8 {
                    Poll::Ready(None)
                } else {
                    let ended = decode_answer::<(), E>(
                        &frame,
                        peer_limit,
                        &this.service,
                        this.method,
                        endpoint,
                    );
                    Poll::Ready(ended.err().map(Err))
                }
            }
            _ => {
                this.grant_credit();
                Poll::Ready(Some(decode_answer(
                    &frame,
                    peer_limit,
                    &this.service,
                    this.method,
                    endpoint,
                )))
            }
        }
    }
}

impl<T, E> Drop for RemoteStream<T, E> {
    fn drop(&mut self) {
        if !self.done {
            self.connection.cancel(self.id);
        }
    }
}
