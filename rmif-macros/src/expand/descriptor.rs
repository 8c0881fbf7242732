//! The service's `ServiceDescriptor`: its name, group, version and methods, as a constant.

use proc_macro2::TokenStream;
use quote::quote;

use crate::model::{MethodKind, Service};

pub(crate) fn expand(service: &Service) -> TokenStream {
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
        let failsafe = m.options.failsafe.is_some();
        let cluster = match &m.options.cluster {
            Some((name, _)) => {
                let variant = quote::format_ident!("{}", cluster_variant(name));
                quote!(::core::option::Option::Some(#krate::ClusterPolicy::#variant))
            }
            None => quote!(::core::option::Option::None),
        };
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
                cluster: #cluster,
                failsafe: #failsafe,
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

/// The `ClusterPolicy` variant of a name `#[rmif(cluster = …)]` accepted.
fn cluster_variant(name: &str) -> &'static str {
    match name {
        "failfast" => "Failfast",
        "forking" => "Forking",
        _ => "Failover",
    }
}
