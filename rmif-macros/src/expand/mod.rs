//! Code generation: everything `#[service]` puts beside (and in place of) the trait.
//!
//! - [`service_trait`]: the trait itself, with native async methods;
//! - [`descriptor`]: its static description;
//! - [`provider`]: `…Provider`, which dispatches requests to an implementation;
//! - [`consumer`]: `…Consumer`, the stub that implements the trait by calling a provider;
//! - [`companion`]: `Dyn…`, any implementation behind one type;
//! - [`checks`]: compile-time checks reported at the user's types.

mod checks;
mod companion;
mod consumer;
mod descriptor;
mod provider;
mod service_trait;

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Pat, PatIdent, PatType, ReturnType, Signature};

use crate::model::{Method, Service};

pub(crate) fn expand(service: &Service) -> TokenStream {
    let names = Names::of(service);
    let service_trait = service_trait::expand(service, &names);
    let provider = provider::expand(service, &names);
    let consumer = consumer::expand(service, &names);
    let companion = companion::expand(service, &names);
    let checks = checks::expand(service);
    quote! {
        #service_trait
        #provider
        #consumer
        #companion
        #checks
    }
}

/// The names of the generated items.
pub(crate) struct Names {
    pub(crate) provider: Ident,
    pub(crate) consumer: Ident,
    pub(crate) companion: Ident,
}

impl Names {
    fn of(service: &Service) -> Self {
        let name = &service.item.ident;
        Names {
            provider: format_ident!("{}Provider", name),
            consumer: format_ident!("{}Consumer", name),
            companion: format_ident!("Dyn{}", name),
        }
    }
}

/// The generated code's names for a method's arguments (the trait's own patterns may be
/// anything, or clash with the generated code's locals).
fn arg_names(method: &Method) -> Vec<Ident> {
    (0..method.arg_types.len())
        .map(|i| format_ident!("__rmif_arg{}", i))
        .collect()
}

/// The method's signature with its arguments named by [`arg_names`] and their attributes
/// dropped, for the generated implementations of the trait.
fn renamed_signature(method: &Method) -> Signature {
    let mut sig = method.sig.clone();
    let names = arg_names(method);
    let typed = sig.inputs.iter_mut().filter_map(|input| match input {
        FnArg::Typed(typed) => Some(typed),
        FnArg::Receiver(_) => None,
    });
    for (PatType { pat, attrs, .. }, name) in typed.zip(names) {
        attrs.clear();
        **pat = Pat::Ident(PatIdent {
            attrs: Vec::new(),
            by_ref: None,
            mutability: None,
            ident: name,
            subpat: None,
        });
    }
    sig
}

/// `async fn m(…) -> R` as `fn m(…) -> impl Future<Output = R> + Send`, the `Send` bound at the
/// return type, so that an implementation whose future is not `Send` is pointed there.
fn future_signature(sig: &Signature) -> Signature {
    let mut sig = sig.clone();
    sig.asyncness = None;
    if let ReturnType::Type(_, ty) = &sig.output {
        let future = quote_spanned! {ty.span()=>
            impl ::core::future::Future<Output = #ty> + ::core::marker::Send
        };
        sig.output = syn::parse_quote!(-> #future);
    }
    sig
}
