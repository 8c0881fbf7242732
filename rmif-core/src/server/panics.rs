//! Running a handler's future safely: one poll with the call's context installed, and turning
//! a panic or a layer's error into the message the consumer reads.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::context::CallContext;

/// Polls `future` once with the call's context installed, catching a panic.
pub(super) fn poll_once<T>(
    context: &CallContext,
    future: &mut Pin<Box<dyn Future<Output = T> + Send>>,
) -> Result<Poll<T>, String> {
    // A no-op waker is enough: a future still pending after this poll is spawned, and the
    // runtime polls every new task at once, registering its real waker.
    let mut cx = Context::from_waker(Waker::noop());
    context
        .clone()
        .sync_scope(|| catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))))
        .map_err(|panic| panic_message(&*panic))
}

/// What a consumer is told when a provider layer failed its call.
pub(super) fn rejection_reason(error: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    match error.downcast_ref::<crate::Error>() {
        Some(crate::Error::Rejected { reason, .. }) => reason.clone(),
        _ => error.to_string(),
    }
}

pub(super) fn panic_message(panic: &(dyn Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("the handler panicked: {detail}")
}
