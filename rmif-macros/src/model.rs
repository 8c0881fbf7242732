//! The service as the macro understands it, built from the trait while enforcing the rules a
//! remote service must follow (each with an error that says what to write instead).

use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, Ident, ItemTrait, PathArguments, ReturnType, Signature, TraitItem,
    Type, TypePath,
};

use crate::attrs::{MethodOptions, ServiceOptions};

/// A validated service trait.
pub(crate) struct Service {
    /// The trait, with `#[rmif]` attributes removed.
    pub(crate) item: ItemTrait,
    pub(crate) options: ServiceOptions,
    pub(crate) methods: Vec<Method>,
}

/// How a method answers.
pub(crate) enum MethodKind {
    Unary,
    OneWay,
    /// Server stream of `item`.
    Stream {
        item: Box<Type>,
    },
}

/// A validated method.
pub(crate) struct Method {
    pub(crate) name: Ident,
    pub(crate) sig: Signature,
    pub(crate) arg_types: Vec<Type>,
    /// The return type as written: `Result<ok, err>`.
    pub(crate) output: Type,
    pub(crate) ok: Type,
    pub(crate) err: Type,
    pub(crate) kind: MethodKind,
    pub(crate) options: MethodOptions,
    pub(crate) id: u32,
    /// The position (among the arguments after `&self`) of the argument named by
    /// `#[rmif(hash_key = …)]`.
    pub(crate) hash_key: Option<usize>,
}

impl Service {
    pub(crate) fn from_trait(mut item: ItemTrait, options: ServiceOptions) -> syn::Result<Self> {
        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            return Err(syn::Error::new_spanned(
                &item.generics,
                "rmif service traits cannot be generic: both sides must agree on concrete types",
            ));
        }
        let mut methods = Vec::new();
        let mut errors: Option<syn::Error> = None;
        for trait_item in &mut item.items {
            let result = match trait_item {
                TraitItem::Fn(function) => MethodOptions::take(&mut function.attrs)
                    .and_then(|options| Method::from_signature(&function.sig, options)),
                other => Err(syn::Error::new_spanned(
                    other,
                    "rmif service traits may contain only methods",
                )),
            };
            match result {
                Ok(method) => methods.push(method),
                Err(error) => match &mut errors {
                    Some(all) => all.combine(error),
                    None => errors = Some(error),
                },
            }
        }
        if let Some(errors) = errors {
            return Err(errors);
        }
        for (i, method) in methods.iter().enumerate() {
            if let Some(other) = methods[..i].iter().find(|m| m.id == method.id) {
                return Err(syn::Error::new_spanned(
                    &method.name,
                    format!(
                        "methods `{}` and `{}` hash to the same method id; rename one",
                        other.name, method.name
                    ),
                ));
            }
        }
        Ok(Service {
            item,
            options,
            methods,
        })
    }
}

impl Method {
    fn from_signature(sig: &Signature, options: MethodOptions) -> syn::Result<Self> {
        if sig.asyncness.is_none() {
            return Err(syn::Error::new(
                sig.fn_token.span(),
                format!(
                    "rmif service methods must be `async fn`: write `async fn {}`",
                    sig.ident
                ),
            ));
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            return Err(syn::Error::new_spanned(
                &sig.generics,
                "rmif service methods cannot be generic: both sides must agree on concrete types",
            ));
        }
        if let Some(variadic) = &sig.variadic {
            return Err(syn::Error::new_spanned(
                variadic,
                "rmif service methods cannot be variadic",
            ));
        }
        let mut inputs = sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(receiver))
                if receiver.reference.is_some()
                    && receiver.mutability.is_none()
                    && receiver.colon_token.is_none() => {}
            Some(other) => {
                return Err(syn::Error::new_spanned(
                    other,
                    "rmif service methods take `&self` first: the service is shared by concurrent calls",
                ));
            }
            None => {
                return Err(syn::Error::new_spanned(
                    sig,
                    "rmif service methods take `&self` first: the service is shared by concurrent calls",
                ));
            }
        }
        let mut arg_types = Vec::new();
        let mut arg_names = Vec::new();
        for input in inputs {
            match input {
                FnArg::Typed(typed) => {
                    check_owned(&typed.ty)?;
                    arg_types.push((*typed.ty).clone());
                    arg_names.push(match &*typed.pat {
                        syn::Pat::Ident(pat) => pat.ident.to_string(),
                        _ => String::new(),
                    });
                }
                // syn refuses a second receiver before the macro sees it (the ui case
                // variadic_or_second_receiver shows its message); kept for completeness.
                FnArg::Receiver(receiver) => {
                    return Err(syn::Error::new_spanned(receiver, "unexpected receiver"));
                }
            }
        }
        let (output, ok, err) = split_result(sig)?;
        let stream_item = streaming_item(&ok);
        let kind = match (options.oneway, stream_item) {
            (Some(span), Some(_)) => {
                return Err(syn::Error::new(
                    span,
                    "a streaming method cannot be `oneway`: its items are its answer",
                ));
            }
            (Some(span), None) if !is_unit(&ok) => {
                return Err(syn::Error::new(
                    span,
                    "a `oneway` method sends no answer, so it must return `Result<(), E>`",
                ));
            }
            (Some(_), None) => MethodKind::OneWay,
            (None, Some(_)) if options.failsafe.is_some() => {
                return Err(syn::Error::new(
                    options.failsafe.expect("checked"),
                    "a streaming method cannot be `failsafe`: a stream has no default value",
                ));
            }
            (None, Some(item)) => MethodKind::Stream {
                item: Box::new(item),
            },
            (None, None) => MethodKind::Unary,
        };
        let hash_key = match &options.hash_key {
            None => None,
            Some((name, span)) => Some(arg_names.iter().position(|n| n == name).ok_or_else(|| {
                let named: Vec<&str> = arg_names
                    .iter()
                    .filter(|n| !n.is_empty())
                    .map(String::as_str)
                    .collect();
                syn::Error::new(
                    *span,
                    if named.is_empty() {
                        format!("hash_key names `{name}`, but `{}` has no named argument", sig.ident)
                    } else {
                        format!(
                            "hash_key names `{name}`, which is not an argument of `{}` (its arguments: {})",
                            sig.ident,
                            named.join(", ")
                        )
                    },
                )
            })?),
        };
        Ok(Method {
            name: sig.ident.clone(),
            sig: sig.clone(),
            arg_types,
            output,
            ok,
            err,
            kind,
            id: fnv1a32(&sig.ident.to_string()),
            options,
            hash_key,
        })
    }
}

/// FNV-1a 32 of a method name: the same function as `rmif_core::protocol::ids::method_id`.
fn fnv1a32(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// The method's return type, `Result<T, E>`, then `T` and `E`.
fn split_result(sig: &Signature) -> syn::Result<(Type, Type, Type)> {
    const EXPECTED: &str = "rmif service methods return `Result<T, E>` where `E: From<rmif_core::Error>`, so that transport failures reach the caller";
    let ty = match &sig.output {
        ReturnType::Type(_, ty) => &**ty,
        // Where the return type would be written: after the parameters.
        ReturnType::Default => {
            return Err(syn::Error::new(sig.paren_token.span.close(), EXPECTED));
        }
    };
    let args =
        last_segment_args(ty, "Result").ok_or_else(|| syn::Error::new_spanned(ty, EXPECTED))?;
    match args.as_slice() {
        [ok, err] => Ok((ty.clone(), ok.clone(), err.clone())),
        _ => Err(syn::Error::new_spanned(
            ty,
            "write both parameters of the result, `Result<T, E>`: the error type must be explicit",
        )),
    }
}

/// The type arguments of `ty` if its last path segment is `name`.
fn last_segment_args(ty: &Type, name: &str) -> Option<Vec<Type>> {
    let Type::Path(TypePath { qself: None, path }) = ty else {
        return None;
    };
    let segment = path.segments.last()?;
    if segment.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return Some(Vec::new());
    };
    Some(
        args.args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty.clone()),
                _ => None,
            })
            .collect(),
    )
}

/// `Item` if `ty` is `Streaming<Item, E>`.
fn streaming_item(ty: &Type) -> Option<Type> {
    match last_segment_args(ty, "Streaming")?.as_slice() {
        [item, _] => Some(item.clone()),
        _ => None,
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(tuple) if tuple.elems.is_empty())
}

/// Rejects borrowed argument types: the value is decoded on another machine and owned there.
fn check_owned(ty: &Type) -> syn::Result<()> {
    const BORROWED: &str = "arguments of rmif service methods must be owned types (for example `String`, not `&str`): they are decoded on another process";
    match ty {
        Type::Reference(_) => Err(syn::Error::new_spanned(ty, BORROWED)),
        Type::ImplTrait(_) | Type::TraitObject(_) => Err(syn::Error::new_spanned(
            ty,
            "arguments of rmif service methods must be concrete, serializable types",
        )),
        Type::Path(path) => {
            for segment in &path.path.segments {
                if let PathArguments::AngleBracketed(args) = &segment.arguments {
                    for arg in &args.args {
                        match arg {
                            GenericArgument::Lifetime(_) => {
                                return Err(syn::Error::new_spanned(ty, BORROWED));
                            }
                            // A slice behind a pointer (`Box<[u8]>`, `Arc<[T]>`) is owned.
                            GenericArgument::Type(Type::Slice(slice)) => check_owned(&slice.elem)?,
                            GenericArgument::Type(inner) => check_owned(inner)?,
                            _ => {}
                        }
                    }
                }
            }
            Ok(())
        }
        Type::Tuple(tuple) => tuple.elems.iter().try_for_each(check_owned),
        Type::Array(array) => check_owned(&array.elem),
        Type::Paren(paren) => check_owned(&paren.elem),
        Type::Group(group) => check_owned(&group.elem),
        Type::Slice(_) => Err(syn::Error::new_spanned(
            ty,
            "arguments of rmif service methods must be sized, owned types (for example `Vec<T>`)",
        )),
        _ => Ok(()),
    }
}
