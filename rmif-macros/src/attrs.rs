//! Parsing of `#[service(…)]` and `#[rmif(…)]` attributes.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, Meta, Token};

/// Options given to `#[service(…)]`.
pub(crate) struct ServiceOptions {
    pub(crate) name: Option<String>,
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) krate: syn::Path,
}

impl ServiceOptions {
    pub(crate) fn parse(attr: TokenStream) -> syn::Result<Self> {
        let mut options = ServiceOptions {
            name: None,
            group: String::new(),
            version: String::new(),
            krate: syn::parse_quote!(::rmif_core),
        };
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)?;
        for meta in metas {
            let key = meta_key(&meta);
            match key.as_str() {
                "name" => {
                    let name = string_value(&meta)?;
                    if name.is_empty() {
                        return Err(syn::Error::new_spanned(
                            &meta,
                            "service name must not be empty",
                        ));
                    }
                    options.name = Some(name);
                }
                "group" => options.group = string_value(&meta)?,
                "version" => options.version = string_value(&meta)?,
                "crate" => {
                    let path = string_value(&meta)?;
                    options.krate = syn::parse_str(&path).map_err(|_| {
                        syn::Error::new_spanned(&meta, format!("`{path}` is not a path"))
                    })?;
                }
                _ => {
                    return Err(syn::Error::new_spanned(
                        &meta,
                        format!(
                            "unknown #[service] option `{key}`; expected name, group, version or crate"
                        ),
                    ));
                }
            }
        }
        Ok(options)
    }
}

/// Options given to a method's `#[rmif(…)]`.
#[derive(Default)]
pub(crate) struct MethodOptions {
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) idempotent: bool,
    pub(crate) oneway: Option<Span>,
    /// `hash_key = "arg"`: the argument consistent hashing routes by, and where it was named.
    pub(crate) hash_key: Option<(String, Span)>,
    /// `cluster = "failover" | "failfast" | "forking"`, and where it was written.
    pub(crate) cluster: Option<(String, Span)>,
    /// `failsafe`, and where it was written.
    pub(crate) failsafe: Option<Span>,
}

impl MethodOptions {
    /// Takes every `#[rmif(…)]` out of `attrs`, leaving the others.
    pub(crate) fn take(attrs: &mut Vec<syn::Attribute>) -> syn::Result<Self> {
        let mut options = MethodOptions::default();
        let mut kept = Vec::with_capacity(attrs.len());
        for attr in attrs.drain(..) {
            if !attr.path().is_ident("rmif") {
                kept.push(attr);
                continue;
            }
            let metas = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
            for meta in metas {
                match meta_key(&meta).as_str() {
                    "timeout_ms" => {
                        let value = int_value(&meta)?;
                        if value == 0 {
                            return Err(syn::Error::new_spanned(
                                &meta,
                                "timeout_ms must be at least 1",
                            ));
                        }
                        options.timeout_ms = Some(value);
                    }
                    "idempotent" => {
                        flag(&meta)?;
                        options.idempotent = true;
                    }
                    "oneway" => {
                        flag(&meta)?;
                        options.oneway = Some(syn::spanned::Spanned::span(&meta));
                    }
                    "cluster" => {
                        let name = string_value(&meta)?.to_ascii_lowercase();
                        if !["failover", "failfast", "forking"].contains(&name.as_str()) {
                            return Err(syn::Error::new_spanned(
                                &meta,
                                format!(
                                    "unknown cluster policy `{name}`; expected \"failover\", \"failfast\" or \"forking\" (failsafe is an option of its own: #[rmif(failsafe)])"
                                ),
                            ));
                        }
                        options.cluster = Some((name, syn::spanned::Spanned::span(&meta)));
                    }
                    "failsafe" => {
                        flag(&meta)?;
                        options.failsafe = Some(syn::spanned::Spanned::span(&meta));
                    }
                    "hash_key" => {
                        let name = string_value(&meta)?;
                        options.hash_key = Some((name, syn::spanned::Spanned::span(&meta)));
                    }
                    other => {
                        return Err(syn::Error::new_spanned(
                            &meta,
                            format!(
                                "unknown #[rmif] option `{other}`; expected timeout_ms = N, idempotent, oneway, hash_key = \"argument\", cluster = \"policy\" or failsafe"
                            ),
                        ));
                    }
                }
            }
        }
        *attrs = kept;
        Ok(options)
    }
}

fn meta_key(meta: &Meta) -> String {
    meta.path()
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| quote::quote!(#meta).to_string())
}

fn value_lit(meta: &Meta) -> syn::Result<&Lit> {
    match meta {
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(ExprLit { lit, .. }) => Ok(lit),
            other => Err(syn::Error::new_spanned(other, "expected a literal")),
        },
        _ => Err(syn::Error::new_spanned(
            meta,
            format!("expected `{} = …`", meta_key(meta)),
        )),
    }
}

fn string_value(meta: &Meta) -> syn::Result<String> {
    match value_lit(meta)? {
        Lit::Str(s) => Ok(s.value()),
        other => Err(syn::Error::new_spanned(other, "expected a string literal")),
    }
}

fn int_value(meta: &Meta) -> syn::Result<u64> {
    match value_lit(meta)? {
        Lit::Int(i) => i.base10_parse(),
        other => Err(syn::Error::new_spanned(other, "expected an integer")),
    }
}

fn flag(meta: &Meta) -> syn::Result<()> {
    match meta {
        Meta::Path(_) => Ok(()),
        _ => Err(syn::Error::new_spanned(
            meta,
            format!("`{}` takes no value", meta_key(meta)),
        )),
    }
}
