//! Code generation: the trait itself (dyn-compatible via async-trait), its descriptor, the
//! provider dispatcher and the consumer stub.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Pat, PatIdent, PatType};

use crate::model::{Method, MethodKind, Service, is_byte_vec};

pub(crate) fn expand(service: &Service) -> TokenStream {
    let krate = &service.options.krate;
    let trait_name = &service.item.ident;
    let vis = &service.item.vis;
    let provider = format_ident!("{}Provider", trait_name);
    let consumer = format_ident!("{}Consumer", trait_name);

    let mut item = service.item.clone();
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Send));
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Sync));
    if item.colon_token.is_none() {
        item.colon_token = Some(Default::default());
    }

    let descriptor = descriptor(service);
    let checks = type_checks(service);
    let arms = service.methods.iter().map(|m| dispatch_arm(krate, m));
    let stub_methods = service
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
    let provider_doc = format!(
        "Serves any implementation of [`{trait_name}`] through `Server`: \
         `Server::builder(config).add_service({provider}::new(my_impl))`."
    );
    let consumer_doc = format!(
        "Calls a remote [`{trait_name}`] and implements the trait itself, so code written \
         against `Arc<dyn {trait_name}>` runs unchanged with a local implementation or this stub."
    );

    quote! {
        #[#krate::__private::async_trait]
        #item

        #[doc = #provider_doc]
        #[derive(Clone)]
        #vis struct #provider {
            inner: ::std::sync::Arc<dyn #trait_name>,
        }

        impl #provider {
            /// The service's static description (name, methods, their ids and options).
            pub const DESCRIPTOR: &'static #krate::ServiceDescriptor = #descriptor;

            /// Wraps an implementation for serving.
            pub fn new(service: impl #trait_name + 'static) -> Self {
                Self { inner: ::std::sync::Arc::new(service) }
            }

            /// Wraps an implementation that is shared with other code.
            pub fn from_arc(service: ::std::sync::Arc<dyn #trait_name>) -> Self {
                Self { inner: service }
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
                match method_id {
                    #(#arms)*
                    _ => #krate::Dispatch::UnknownMethod,
                }
            }
        }

        #[doc = #consumer_doc]
        #[derive(Clone)]
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

        #[#krate::__private::async_trait]
        impl #trait_name for #consumer {
            #(#stub_methods)*
        }

        #checks
    }
}

fn descriptor(service: &Service) -> TokenStream {
    let krate = &service.options.krate;
    let trait_name = service.item.ident.to_string();
    let name = match &service.options.name {
        Some(name) => quote!(#name),
        None => quote!(::core::concat!(::core::module_path!(), "::", #trait_name)),
    };
    let group = &service.options.group;
    let version = &service.options.version;
    let methods = service.methods.iter().map(|m| {
        let name = m.name.to_string();
        let id = m.id;
        let timeout = match m.options.timeout_ms {
            Some(ms) => quote!(::core::option::Option::Some(#ms)),
            None => quote!(::core::option::Option::None),
        };
        let idempotent = m.options.idempotent;
        let oneway = matches!(m.kind, MethodKind::OneWay);
        let streaming = matches!(m.kind, MethodKind::Stream { .. });
        quote! {
            #krate::MethodDescriptor {
                name: #name,
                id: #id,
                timeout_ms: #timeout,
                idempotent: #idempotent,
                oneway: #oneway,
                streaming: #streaming,
            }
        }
    });
    quote! {
        &#krate::ServiceDescriptor {
            name: #name,
            group: #group,
            version: #version,
            methods: &[#(#methods),*],
        }
    }
}

fn arg_names(method: &Method) -> Vec<Ident> {
    (0..method.arg_types.len())
        .map(|i| format_ident!("__rmif_arg{}", i))
        .collect()
}

/// The argument tuple's pattern and type on the provider. Arguments travel as a sequence (an
/// array in msgpack and json); a method without arguments sends an empty one. A `Vec<u8>`
/// travels as bytes (msgpack `bin`), decoded as a `ByteBuf`.
fn args_tuple(krate: &syn::Path, method: &Method) -> (TokenStream, TokenStream) {
    let names = arg_names(method);
    let types = method.arg_types.iter().map(|ty| {
        if is_byte_vec(ty) {
            quote!(#krate::__private::ByteBuf)
        } else {
            quote!(#ty)
        }
    });
    if names.is_empty() {
        (quote!(_), quote!([(); 0]))
    } else {
        (quote!((#(#names,)*)), quote!((#(#types,)*)))
    }
}

fn dispatch_arm(krate: &syn::Path, method: &Method) -> TokenStream {
    let id = method.id;
    let name = &method.name;
    let (pattern, ty) = args_tuple(krate, method);
    let call_args = arg_names(method)
        .into_iter()
        .zip(&method.arg_types)
        .map(|(arg, ty)| {
            if is_byte_vec(ty) {
                quote!(#arg.into_vec())
            } else {
                quote!(#arg)
            }
        });
    let (helper, result) = match method.kind {
        MethodKind::Unary if is_byte_vec(&method.ok) => (
            quote!(unary),
            quote!(.map(#krate::__private::ByteBuf::from)),
        ),
        MethodKind::Unary => (quote!(unary), quote!()),
        MethodKind::OneWay => (quote!(oneway), quote!()),
        MethodKind::Stream { .. } => (quote!(server_stream), quote!()),
    };
    quote! {
        #id => {
            let service = ::std::sync::Arc::clone(&self.inner);
            #krate::__private::#helper(request, move |#pattern: #ty| async move {
                service.#name(#(#call_args),*).await #result
            })
        }
    }
}

fn stub_method(krate: &syn::Path, index: usize, method: &Method) -> TokenStream {
    let mut sig = method.sig.clone();
    let names = arg_names(method);
    for (input, name) in sig
        .inputs
        .iter_mut()
        .filter(|i| matches!(i, FnArg::Typed(_)))
        .zip(&names)
    {
        if let FnArg::Typed(PatType { pat, attrs, .. }) = input {
            attrs.clear();
            **pat = Pat::Ident(PatIdent {
                attrs: Vec::new(),
                by_ref: None,
                mutability: None,
                ident: name.clone(),
                subpat: None,
            });
        }
    }
    let wire_args = names.iter().zip(&method.arg_types).map(|(name, ty)| {
        if is_byte_vec(ty) {
            quote!(#krate::__private::Bytes::new(&#name))
        } else {
            quote!(#name)
        }
    });
    let args = if names.is_empty() {
        quote!(&[(); 0])
    } else {
        quote!(&(#(#wire_args,)*))
    };
    let call = match method.kind {
        MethodKind::Unary if is_byte_vec(&method.ok) => quote! {
            self.client
                .unary::<_, #krate::__private::ByteBuf, _>(#index, #args)
                .await
                .map(#krate::__private::ByteBuf::into_vec)
        },
        MethodKind::Unary => quote!(self.client.unary(#index, #args).await),
        MethodKind::OneWay => quote!(self.client.oneway(#index, #args).await),
        MethodKind::Stream { .. } => quote!(self.client.server_stream(#index, #args).await),
    };
    quote! {
        #sig {
            #call
        }
    }
}

/// Compile-time checks with spans on the user's types, so that an unserializable argument or an
/// error type without `From<rmif_core::Error>` is reported where it is written.
fn type_checks(service: &Service) -> TokenStream {
    let krate = &service.options.krate;
    let mut checks = Vec::new();
    for method in &service.methods {
        for ty in &method.arg_types {
            checks.push(quote_spanned!(ty.span()=> #krate::__private::assert_wire_type::<#ty>();));
        }
        let err = &method.err;
        checks
            .push(quote_spanned!(err.span()=> #krate::__private::assert_service_error::<#err>();));
        match &method.kind {
            MethodKind::Stream { item } => {
                checks.push(
                    quote_spanned!(item.span()=> #krate::__private::assert_wire_type::<#item>();),
                );
            }
            MethodKind::Unary | MethodKind::OneWay => {
                let ok = &method.ok;
                checks.push(
                    quote_spanned!(ok.span()=> #krate::__private::assert_wire_type::<#ok>();),
                );
            }
        }
    }
    quote! {
        const _: () = {
            #(#checks)*
        };
    }
}
