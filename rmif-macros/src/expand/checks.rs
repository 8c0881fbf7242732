//! Compile-time checks with spans on the user's types, so that an unserializable argument, an
//! error type without `From<rmif_core::Error>`, or a byte container that will not travel as
//! bytes is reported where it is written.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::Type;
use syn::spanned::Spanned;

use crate::bytes::nested_byte_containers;
use crate::model::{MethodKind, Service};

pub(crate) fn expand(service: &Service) -> TokenStream {
    let krate = &service.options.krate;
    let mut checks = Vec::new();
    for method in &service.methods {
        // The values that cross the wire; each is written through `ToWire`.
        let mut values: Vec<&Type> = method.arg_types.iter().collect();
        values.push(match &method.kind {
            MethodKind::Stream { item } => item,
            MethodKind::Unary | MethodKind::OneWay => &method.ok,
        });
        for ty in values {
            checks.push(quote_spanned!(ty.span()=> #krate::__private::assert_wire_type::<#ty>();));
            for nested in nested_byte_containers(ty) {
                checks.push(quote_spanned!(nested.span()=>
                    #krate::__private::nested_bytes_travel_as_integers();
                ));
            }
        }
        let err = &method.err;
        checks
            .push(quote_spanned!(err.span()=> #krate::__private::assert_service_error::<#err>();));
    }
    quote! {
        const _: () = {
            #(#checks)*
        };
    }
}
