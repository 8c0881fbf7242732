//! `#[service]`: turns a trait into an rmif service, generating a provider dispatcher and a
//! consumer stub that implements the same trait.
//!
//! Use it through `rmif_core::service`; the generated code is documented there.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod attrs;
mod bytes;
mod expand;
mod model;

use proc_macro::TokenStream;

/// Makes a trait an rmif service.
///
/// ```text
/// #[rmif_core::service]
/// pub trait Calculator {
///     async fn add(&self, a: u64, b: u64) -> Result<u64, CalcError>;
///     #[rmif(timeout_ms = 200, idempotent)]
///     async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
/// }
///
/// struct Local;
///
/// impl Calculator for Local {
///     async fn add(&self, a: u64, b: u64) -> Result<u64, CalcError> { Ok(a + b) }
///     async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> { … }
/// }
/// ```
///
/// The trait keeps its native `async fn`s, each declared as returning
/// `impl Future<Output = …> + Send` (so implementations are written with plain `async fn`s, and
/// the compiler checks at each one that its future is `Send`), and gains `Send + Sync`
/// supertraits. Beside it:
/// - `CalculatorProvider`: serves any `impl Calculator` through `rmif_core::Server`;
/// - `CalculatorConsumer`: a stub made from an `rmif_core::Client` that implements `Calculator`
///   by calling a provider;
/// - `DynCalculator`: any implementation behind one type (a trait with async methods cannot be
///   a `dyn` trait object), implementing `Calculator` with boxed futures.
///
/// Service attributes: `name = "…"` (default: the trait's module path and name),
/// `group = "…"`, `version = "…"`, and `crate = "…"` (the path of rmif-core when it is renamed
/// in Cargo.toml). Method attributes, in `#[rmif(…)]`: `timeout_ms = N`, `idempotent`
/// (may be retried on another provider after a connection failure), `oneway` (no answer; the
/// method must return `Result<(), E>`), `hash_key = "arg"` (with `Consumer_policy =
/// consistent_hash`, calls with the same value of argument `arg` go to the same provider; without
/// it, the same arguments altogether do), `cluster = "failover" | "failfast" | "forking"` (how
/// its calls treat failing providers, unless the consumer's `Cluster.<method>` says otherwise),
/// `failsafe` (a call that gets no answer returns the default value of its type; not for
/// streams). A method returning `Result<rmif_core::Streaming<T, E>, E>`
/// is a server stream.
///
/// Byte payloads travel as MessagePack `bin`: an argument, result or stream item of type
/// `Vec<u8>` or `Box<[u8]>` (or an alias of one), and any type that serializes as bytes itself
/// (`serde_bytes::ByteBuf`, `bytes::Bytes` with bytes' `serde` feature, a field with
/// `#[serde(with = "serde_bytes")]`). A `Vec<u8>` or `Box<[u8]>` written inside another type
/// (`Option<Vec<u8>>`) would travel as an array of integers; the macro warns there.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = proc_macro2::TokenStream::from(attr);
    let item = proc_macro2::TokenStream::from(item);
    match expand_service(attr, item) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn expand_service(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let options = attrs::ServiceOptions::parse(attr)?;
    // An item that does not parse is reported as syn reports it; one that parses but is not a
    // trait gets the rule.
    let item = match syn::parse2(item)? {
        syn::Item::Trait(item) => item,
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "#[service] applies to a trait: `#[service] pub trait Calculator { … }`",
            ));
        }
    };
    let service = model::Service::from_trait(item, options)?;
    Ok(expand::expand(&service))
}

/// No longer needed on implementations of rmif services, and does nothing.
///
/// Service traits declare their methods as returning `impl Future + Send`, which an
/// implementation writes as plain `async fn`s; the attribute that boxed those futures would now
/// make the implementation's signatures differ from the trait's. It is kept so that code written
/// for earlier versions compiles, with a warning, and leaves the item it is put on unchanged.
#[deprecated(
    note = "rmif services need no #[async_trait]: remove the attribute, and write the methods as plain `async fn`s (for a dyn-compatible async trait of your own, depend on the async-trait crate)"
)]
#[proc_macro_attribute]
pub fn async_trait(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
