//! `…Consumer`: the stub that implements the trait by calling the service's providers.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Names, arg_names, renamed_signature};
use crate::model::{Method, MethodKind, Service};

pub(crate) fn expand(service: &Service, names: &Names) -> TokenStream {
    let krate = &service.options.krate;
    let trait_name = &service.item.ident;
    let vis = &service.item.vis;
    let Names {
        provider, consumer, ..
    } = names;
    let methods = service
        .methods
        .iter()
        .enumerate()
        .map(|(index, m)| stub_method(krate, index, m));
    // `ready` waits for a provider; a trait with a method of that name keeps it (callers then
    // use `service_client().ready(…)`).
    let ready = if service.methods.iter().any(|m| m.name == "ready") {
        quote!()
    } else {
        quote! {
            /// Waits until a provider of the service is connected, for at most `timeout`; the
            /// error says why none is (see `ServiceClient::ready`).
            pub async fn ready(
                &self,
                timeout: ::core::time::Duration,
            ) -> ::core::result::Result<(), #krate::Error> {
                self.client.ready(timeout).await
            }
        }
    };
    let doc = format!(
        "Calls a remote [`{trait_name}`] and implements the trait itself, so code written \
         against the trait runs unchanged with a local implementation or this stub."
    );
    quote! {
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #consumer {
            client: #krate::ServiceClient,
        }

        impl #consumer {
            /// A stub calling the service's providers through `client`.
            pub fn new(client: &#krate::Client) -> Self {
                client.stub()
            }

            /// The underlying client (to adjust per-method timeouts, for example).
            pub fn service_client(&self) -> &#krate::ServiceClient {
                &self.client
            }

            #ready
        }

        impl #krate::Stub for #consumer {
            const DESCRIPTOR: &'static #krate::ServiceDescriptor = #provider::DESCRIPTOR;

            fn from_service_client(client: #krate::ServiceClient) -> Self {
                Self { client }
            }
        }

        impl #trait_name for #consumer {
            #(#methods)*
        }
    }
}

fn stub_method(krate: &syn::Path, index: usize, method: &Method) -> TokenStream {
    let sig = renamed_signature(method);
    let names = arg_names(method);
    let args = if names.is_empty() {
        quote!(&[(); 0])
    } else {
        quote!(&(#(#krate::__private::ToWire(&#names),)*))
    };
    // The types are left to inference (from the method's return type), so that an error in
    // one is reported once, at the type, by the checks, rather than again here.
    // Stream items are read as they are (rmp-serde reads `bin` into a `Vec<u8>`): reading them
    // through `FromWire` would take a second boxed stream per call.
    let call = if method.options.failsafe.is_some() {
        let key = match method.hash_key.map(|k| &names[k]) {
            Some(key) => quote!(::core::option::Option::Some(&#krate::__private::ToWire(&#key))),
            None => quote!(::core::option::Option::None::<&()>),
        };
        match method.kind {
            MethodKind::OneWay => quote!(self.client.oneway_failsafe(#index, #args, #key).await),
            // The model refuses failsafe streams.
            MethodKind::Unary | MethodKind::Stream { .. } => quote! {
                self.client
                    .unary_failsafe(#index, #args, #key)
                    .await
                    .map(|#krate::__private::FromWire(value)| value)
            },
        }
    } else {
        match method.hash_key.map(|k| &names[k]) {
            None => match method.kind {
                MethodKind::Unary => quote! {
                    self.client
                        .unary(#index, #args)
                        .await
                        .map(|#krate::__private::FromWire(value)| value)
                },
                MethodKind::OneWay => quote!(self.client.oneway(#index, #args).await),
                MethodKind::Stream { .. } => quote!(self.client.server_stream(#index, #args).await),
            },
            Some(key) => {
                let key = quote!(&#krate::__private::ToWire(&#key));
                match method.kind {
                    MethodKind::Unary => quote! {
                        self.client
                            .unary_by_key(#index, #args, #key)
                            .await
                            .map(|#krate::__private::FromWire(value)| value)
                    },
                    MethodKind::OneWay => {
                        quote!(self.client.oneway_by_key(#index, #args, #key).await)
                    }
                    MethodKind::Stream { .. } => {
                        quote!(self.client.server_stream_by_key(#index, #args, #key).await)
                    }
                }
            }
        }
    };
    quote! {
        #sig {
            #call
        }
    }
}
