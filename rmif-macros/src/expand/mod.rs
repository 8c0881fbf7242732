//! Code generation: everything `#[service]` puts beside (and in place of) the trait.
//!
//! - [`service_trait`]: the trait itself;
//! - [`descriptor`]: its static description;
//! - [`provider`]: `…Provider`, which dispatches requests to an implementation;
//! - [`consumer`]: `…Consumer`, the stub that implements the trait by calling a provider;
//! - [`checks`]: compile-time checks reported at the user's types.

mod checks;
mod consumer;
mod descriptor;
mod provider;
mod service_trait;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::Ident;

use crate::model::{Method, Service};

pub(crate) fn expand(service: &Service) -> TokenStream {
    let names = Names::of(service);
    let service_trait = service_trait::expand(service);
    let provider = provider::expand(service, &names);
    let consumer = consumer::expand(service, &names);
    let checks = checks::expand(service);
    quote! {
        #service_trait
        #provider
        #consumer
        #checks
    }
}

/// The names of the generated items.
pub(crate) struct Names {
    pub(crate) provider: Ident,
    pub(crate) consumer: Ident,
}

impl Names {
    fn of(service: &Service) -> Self {
        let name = &service.item.ident;
        Names {
            provider: format_ident!("{}Provider", name),
            consumer: format_ident!("{}Consumer", name),
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
