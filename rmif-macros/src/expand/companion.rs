//! `Dyn…`: any implementation of the trait behind one type, for code that would have used a
//! trait object (a trait with async methods is not dyn-compatible).
//!
//! A hidden dyn-compatible trait, implemented for every implementation of the service trait,
//! returns each method's future boxed; `Dyn…` holds an `Arc` of it and implements the service
//! trait by forwarding. Its methods have names of their own, so that a type implementing both
//! traits never has two methods of one name in scope. The box is paid only by calls made
//! through `Dyn…`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{FnArg, Ident, Signature};

use super::{Names, arg_names, future_signature, renamed_signature};
use crate::model::{Method, Service};

pub(crate) fn expand(service: &Service, names: &Names) -> TokenStream {
    let krate = &service.options.krate;
    let trait_name = &service.item.ident;
    let vis = &service.item.vis;
    let companion = &names.companion;
    let erased = format_ident!("__RmifErased{}", trait_name);
    let erased_sigs: Vec<Signature> = service
        .methods
        .iter()
        .map(|m| erased_signature(krate, m))
        .collect();
    let erased_impls = service.methods.iter().zip(&erased_sigs).map(|(m, sig)| {
        let name = &m.name;
        let args = arg_names(m);
        quote! {
            #sig {
                ::std::boxed::Box::pin(<T as #trait_name>::#name(self, #(#args),*))
            }
        }
    });
    let forwarding = service.methods.iter().map(|m| {
        let sig = future_signature(&renamed_signature(m));
        let erased_name = erased_name(&m.name);
        let args = arg_names(m);
        quote! {
            #sig {
                self.inner.#erased_name(#(#args),*)
            }
        }
    });
    let doc = format!(
        "Any implementation of [`{trait_name}`] (a local one, a `{consumer}`, another \
         `{companion}`) behind one type, where code needs a trait object: \
         `{companion}::new(implementation)`. It implements [`{trait_name}`] itself, and cloning \
         it shares the implementation. Each call boxes its future; generic code \
         (`impl {trait_name}`) does not need this.",
        consumer = names.consumer,
    );
    quote! {
        #[doc(hidden)]
        trait #erased: ::core::marker::Send + ::core::marker::Sync {
            #(#erased_sigs;)*
        }

        impl<T: #trait_name> #erased for T {
            #(#erased_impls)*
        }

        #[doc = #doc]
        #[derive(Clone)]
        #vis struct #companion {
            inner: ::std::sync::Arc<dyn #erased>,
        }

        impl #companion {
            /// Wraps an implementation.
            pub fn new(service: impl #trait_name + 'static) -> Self {
                Self { inner: ::std::sync::Arc::new(service) }
            }

            /// Wraps an implementation that is shared with other code.
            pub fn from_arc<T: #trait_name + 'static>(service: ::std::sync::Arc<T>) -> Self {
                Self { inner: service }
            }
        }

        impl #trait_name for #companion {
            #(#forwarding)*
        }

        impl ::core::fmt::Debug for #companion {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(::core::stringify!(#companion)).finish_non_exhaustive()
            }
        }
    }
}

fn erased_name(method: &Ident) -> Ident {
    format_ident!("__rmif_{}", method)
}

/// `fn __rmif_name<'a>(&'a self, args…) -> ErasedFuture<'a, Result<T, E>>`.
fn erased_signature(krate: &syn::Path, method: &Method) -> Signature {
    let mut sig = renamed_signature(method);
    sig.asyncness = None;
    sig.ident = erased_name(&method.name);
    sig.generics = syn::parse_quote!(<'__rmif>);
    if let Some(FnArg::Receiver(receiver)) = sig.inputs.first_mut() {
        *receiver = syn::parse_quote!(&'__rmif self);
    }
    let output = &method.output;
    sig.output = syn::parse_quote!(-> #krate::__private::ErasedFuture<'__rmif, #output>);
    sig
}
