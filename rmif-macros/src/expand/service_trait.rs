//! The trait as the user wrote it, minus `#[rmif]` attributes, made `Send + Sync` (one
//! implementation serves concurrent calls from many tasks) and dyn-compatible by async-trait.

use proc_macro2::TokenStream;
use quote::quote;

use crate::model::Service;

pub(crate) fn expand(service: &Service) -> TokenStream {
    let krate = &service.options.krate;
    let mut item = service.item.clone();
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Send));
    item.supertraits
        .push(syn::parse_quote!(::core::marker::Sync));
    if item.colon_token.is_none() {
        item.colon_token = Some(Default::default());
    }
    quote! {
        #[#krate::__private::async_trait]
        #item
    }
}
