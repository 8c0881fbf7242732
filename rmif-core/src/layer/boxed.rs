//! Layer stacks behind one type: what a `Client` or `Server` keeps after its layers were
//! applied, whatever their types, and the list of layers a builder collects.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

/// The error type of layered services: any error, as tower's own layers produce them. rmif
/// turns one back into an [`Error`](crate::Error) (the same error if it was one).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A layered service behind one type: cloneable, shareable between tasks.
pub struct Boxed<Request, Response> {
    inner: Box<dyn ErasedService<Request, Response>>,
}

trait ErasedService<Request, Response>: Send + Sync {
    fn clone_box(&self) -> Box<dyn ErasedService<Request, Response>>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;
    fn call(&mut self, request: Request) -> BoxFuture<Result<Response, BoxError>>;
}

impl<S, Request, Response> ErasedService<Request, Response> for S
where
    S: Service<Request, Response = Response, Error = BoxError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    fn clone_box(&self) -> Box<dyn ErasedService<Request, Response>> {
        Box::new(self.clone())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Service::poll_ready(self, cx)
    }

    fn call(&mut self, request: Request) -> BoxFuture<Result<Response, BoxError>> {
        Box::pin(Service::call(self, request))
    }
}

impl<Request, Response> Boxed<Request, Response> {
    /// Puts `service` behind the common type.
    pub fn new<S>(service: S) -> Self
    where
        S: Service<Request, Response = Response, Error = BoxError> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        Boxed {
            inner: Box::new(service),
        }
    }

    /// Waits until the stack can take a call, then makes it (tower's "oneshot"). The future
    /// owns a clone of the stack, so it outlives the borrow.
    pub(crate) fn oneshot(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Response, BoxError>> + Send + 'static
    where
        Request: Send + 'static,
        Response: 'static,
    {
        let mut service = self.clone();
        async move {
            std::future::poll_fn(|cx| service.inner.poll_ready(cx)).await?;
            service.inner.call(request).await
        }
    }
}

impl<Request, Response> Clone for Boxed<Request, Response> {
    fn clone(&self) -> Self {
        Boxed {
            inner: self.inner.clone_box(),
        }
    }
}

impl<Request, Response> fmt::Debug for Boxed<Request, Response> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Boxed")
    }
}

impl<Request, Response> Service<Request> for Boxed<Request, Response> {
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.inner.call(request)
    }
}

type Wrap<Request, Response> =
    Box<dyn FnOnce(Boxed<Request, Response>) -> Boxed<Request, Response> + Send + Sync>;

/// The layers a builder collected, outermost first (as tower's `ServiceBuilder` orders them).
pub(crate) struct LayerList<Request, Response> {
    wraps: Vec<Wrap<Request, Response>>,
}

impl<Request, Response> Default for LayerList<Request, Response> {
    fn default() -> Self {
        LayerList { wraps: Vec::new() }
    }
}

impl<Request, Response> fmt::Debug for LayerList<Request, Response> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} layer(s)", self.wraps.len())
    }
}

impl<Request: 'static, Response: 'static> LayerList<Request, Response> {
    /// Adds `layer` inside the ones added before it.
    pub(crate) fn push<L>(&mut self, layer: L)
    where
        L: Layer<Boxed<Request, Response>> + Send + Sync + 'static,
        L::Service:
            Service<Request, Response = Response, Error = BoxError> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.wraps
            .push(Box::new(move |inner| Boxed::new(layer.layer(inner))));
    }

    /// Adds `layer` outside every layer added so far.
    pub(crate) fn push_outermost<L>(&mut self, layer: L)
    where
        L: Layer<Boxed<Request, Response>> + Send + Sync + 'static,
        L::Service:
            Service<Request, Response = Response, Error = BoxError> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.wraps
            .insert(0, Box::new(move |inner| Boxed::new(layer.layer(inner))));
    }

    /// Wraps `core` in every layer; `None` when there is none, and calls then take rmif's
    /// direct path, which allocates nothing for the extension point.
    pub(crate) fn build(self, core: Boxed<Request, Response>) -> Option<Boxed<Request, Response>> {
        if self.wraps.is_empty() {
            return None;
        }
        Some(
            self.wraps
                .into_iter()
                .rev()
                .fold(core, |inner, wrap| wrap(inner)),
        )
    }
}
