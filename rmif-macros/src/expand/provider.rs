//! `…Provider`: serves an implementation of the trait, one method id to one handler.
//!
//! The provider is one type whatever it serves: its constructor captures the implementation in
//! a dispatch closure compiled for that implementation's type, so each method is called directly
//! and its future boxed only once, into the `Dispatch` the server drives.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Names, arg_names, descriptor};
use crate::model::{Method, MethodKind, Service};

pub(crate) fn expand(service: &Service, names: &Names) -> TokenStream {
    let krate = &service.options.krate;
    let trait_name = &service.item.ident;
    let vis = &service.item.vis;
    let provider = &names.provider;
    let descriptor = descriptor::expand(service);
    let arms = service.methods.iter().map(|m| dispatch_arm(krate, m));
    let doc = format!(
        "Serves any implementation of [`{trait_name}`] through `Server`: \
         `Server::builder(config).add_service({provider}::new(my_impl))`."
    );
    quote! {
        #[doc = #doc]
        #[derive(Clone)]
        #vis struct #provider {
            dispatch: ::std::sync::Arc<
                dyn ::core::ops::Fn(u32, #krate::IncomingRequest) -> #krate::Dispatch
                    + ::core::marker::Send
                    + ::core::marker::Sync,
            >,
        }

        impl #provider {
            /// The service's static description (name, methods, their ids and options).
            pub const DESCRIPTOR: &'static #krate::ServiceDescriptor = #descriptor;

            /// Wraps an implementation for serving.
            pub fn new(service: impl #trait_name + 'static) -> Self {
                Self::from_arc(::std::sync::Arc::new(service))
            }

            /// Wraps an implementation that is shared with other code.
            pub fn from_arc<T>(service: ::std::sync::Arc<T>) -> Self
            where
                T: #trait_name + ?::core::marker::Sized + 'static,
            {
                let dispatch = move |method_id: u32, request: #krate::IncomingRequest| {
                    match method_id {
                        #(#arms)*
                        _ => #krate::Dispatch::UnknownMethod,
                    }
                };
                Self { dispatch: ::std::sync::Arc::new(dispatch) }
            }
        }

        impl #krate::ServiceProvider for #provider {
            fn descriptor(&self) -> &'static #krate::ServiceDescriptor {
                Self::DESCRIPTOR
            }

            fn dispatch(
                &self,
                method_id: u32,
                request: #krate::IncomingRequest,
            ) -> #krate::Dispatch {
                (self.dispatch)(method_id, request)
            }
        }

        impl ::core::fmt::Debug for #provider {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(::core::stringify!(#provider))
                    .field("service", &Self::DESCRIPTOR.name)
                    .finish_non_exhaustive()
            }
        }
    }
}

/// The argument tuple's pattern and type. Arguments travel as a sequence (an array in msgpack
/// and json), each in its wire form; a method without arguments receives an empty one.
fn args_tuple(krate: &syn::Path, method: &Method) -> (TokenStream, TokenStream) {
    let names = arg_names(method);
    let types = &method.arg_types;
    if names.is_empty() {
        (quote!(_), quote!([(); 0]))
    } else {
        (
            quote!((#(#krate::__private::FromWire(#names),)*)),
            quote!((#(#krate::__private::FromWire<#types>,)*)),
        )
    }
}

fn dispatch_arm(krate: &syn::Path, method: &Method) -> TokenStream {
    let id = method.id;
    let name = &method.name;
    let (pattern, ty) = args_tuple(krate, method);
    let args = arg_names(method);
    let helper = match method.kind {
        MethodKind::Unary => quote!(unary),
        MethodKind::OneWay => quote!(oneway),
        MethodKind::Stream { .. } => quote!(server_stream),
    };
    quote! {
        #id => {
            let service = ::std::sync::Arc::clone(&service);
            #krate::__private::#helper(request, move |#pattern: #ty| async move {
                service.#name(#(#args),*).await
            })
        }
    }
}
