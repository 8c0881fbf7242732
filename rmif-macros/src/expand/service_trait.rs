//! The trait as the user wrote it, minus `#[rmif]` attributes, with each `async fn` declared as
//! a method returning `impl Future<Output = …> + Send`.
//!
//! That declaration is what an `async fn` in a trait means, plus the `Send` bound: a provider
//! runs handlers on any thread, so an implementation's futures must be `Send`, and the compiler
//! checks it at the implementation. Implementations still write plain `async fn`s; nothing is
//! boxed. The trait is made `Send + Sync` as well: one implementation serves concurrent calls
//! from many tasks.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Block, TraitItem};

use super::{Names, future_signature};
use crate::model::Service;

pub(crate) fn expand(service: &Service, names: &Names) -> TokenStream {
    let mut item = service.item.clone();
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Send));
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Sync));
    if item.colon_token.is_none() {
        item.colon_token = Some(Default::default());
    }
    for trait_item in &mut item.items {
        let TraitItem::Fn(function) = trait_item else {
            continue;
        };
        function.sig = future_signature(&function.sig);
        if let Some(body) = &mut function.default {
            // A default body becomes the future the method returns; arguments move into it
            // as they do into an `async fn`'s.
            let block: Block = syn::parse_quote!({ async move #body });
            *body = block;
            function
                .attrs
                .push(syn::parse_quote!(#[allow(clippy::manual_async_fn)]));
        }
    }
    let doc = usage_doc(service, names);
    item.attrs.push(syn::parse_quote!(#[doc = ""]));
    item.attrs.push(syn::parse_quote!(#[doc = #doc]));
    quote!(#item)
}

/// Appended to the trait's own documentation: how to implement it, and what comes with it.
fn usage_doc(service: &Service, names: &Names) -> String {
    let trait_name = &service.item.ident;
    let Names {
        provider,
        consumer,
        companion,
    } = names;
    format!(
        "An rmif service. Implement it with plain `async fn`s (their futures must be `Send`: \
         a provider runs them on any thread); [`{provider}`] serves an implementation, \
         [`{consumer}`] calls a remote one through this trait, and [`{companion}`] holds either \
         behind one type where code needs a trait object (`dyn {trait_name}` is not possible: \
         a trait with async methods is not dyn-compatible)."
    )
}
