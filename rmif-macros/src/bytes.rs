//! Byte containers as the macro sees them in a method's types.
//!
//! A whole argument, result or stream item of type `Vec<u8>` or `Box<[u8]>` (or an alias of
//! one) travels as bytes: rmif-core's `ToWire` recognises the type itself. One nested in another
//! type (`Option<Vec<u8>>`, `Vec<Vec<u8>>`) is written by serde as an array of integers, which
//! nothing at run time can change; the macro finds the ones written out and warns at each.

use syn::{GenericArgument, PathArguments, Type, TypePath};

/// The `Vec<u8>` and `Box<[u8]>` written inside `ty` (not `ty` itself).
pub(crate) fn nested_byte_containers(ty: &Type) -> Vec<&Type> {
    let mut found = Vec::new();
    for_each_component(ty, &mut |component| collect(component, &mut found));
    found
}

fn collect<'a>(ty: &'a Type, found: &mut Vec<&'a Type>) {
    if is_byte_container(ty) {
        found.push(ty);
    } else {
        for_each_component(ty, &mut |component| collect(component, found));
    }
}

/// Calls `visit` with each type written directly inside `ty`: type arguments, tuple and array
/// elements.
fn for_each_component<'a>(ty: &'a Type, visit: &mut dyn FnMut(&'a Type)) {
    match ty {
        Type::Path(TypePath { path, .. }) => {
            for segment in &path.segments {
                if let PathArguments::AngleBracketed(args) = &segment.arguments {
                    for arg in &args.args {
                        if let GenericArgument::Type(inner) = arg {
                            visit(inner);
                        }
                    }
                }
            }
        }
        Type::Tuple(tuple) => tuple.elems.iter().for_each(visit),
        Type::Array(array) => visit(&array.elem),
        Type::Paren(paren) => for_each_component(&paren.elem, visit),
        Type::Group(group) => for_each_component(&group.elem, visit),
        _ => {}
    }
}

/// `Vec<u8>` or `Box<[u8]>`, by the last segment of the path (`std::vec::Vec<u8>` too).
fn is_byte_container(ty: &Type) -> bool {
    let Some(arg) = single_type_argument(ty) else {
        return false;
    };
    match (arg, last_ident(ty).as_deref()) {
        (Type::Path(inner), Some("Vec")) => is_u8(inner),
        (Type::Slice(slice), Some("Box")) => {
            matches!(&*slice.elem, Type::Path(inner) if is_u8(inner))
        }
        _ => false,
    }
}

fn is_u8(path: &TypePath) -> bool {
    path.qself.is_none() && path.path.is_ident("u8")
}

fn last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(TypePath { qself: None, path }) => {
            path.segments.last().map(|s| s.ident.to_string())
        }
        _ => None,
    }
}

fn single_type_argument(ty: &Type) -> Option<&Type> {
    let Type::Path(TypePath { qself: None, path }) = ty else {
        return None;
    };
    let PathArguments::AngleBracketed(args) = &path.segments.last()?.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(inner)] => Some(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(ty: &str) -> Vec<String> {
        let ty: Type = syn::parse_str(ty).unwrap();
        nested_byte_containers(&ty)
            .into_iter()
            .map(|t| quote::quote!(#t).to_string().replace(' ', ""))
            .collect()
    }

    #[test]
    fn a_whole_value_is_not_nested() {
        assert!(nested("Vec<u8>").is_empty());
        assert!(nested("Box<[u8]>").is_empty());
        assert!(nested("std::vec::Vec<u8>").is_empty());
    }

    #[test]
    fn containers_inside_other_types_are_found() {
        assert_eq!(nested("Option<Vec<u8>>"), ["Vec<u8>"]);
        assert_eq!(nested("Vec<Vec<u8>>"), ["Vec<u8>"]);
        assert_eq!(nested("(u32, Box<[u8]>)"), ["Box<[u8]>"]);
        assert_eq!(
            nested("HashMap<String, std::vec::Vec<u8>>"),
            ["std::vec::Vec<u8>"]
        );
        assert_eq!(nested("Option<Option<Vec<u8>>>"), ["Vec<u8>"]);
        assert_eq!(nested("[Vec<u8>; 2]"), ["Vec<u8>"]);
    }

    #[test]
    fn other_types_are_not_byte_containers() {
        assert!(nested("Option<Vec<u16>>").is_empty());
        assert!(nested("Option<Box<[u16]>>").is_empty());
        assert!(nested("Option<Vec<Vec<u16>>>").is_empty());
        assert!(nested("Option<serde_bytes::ByteBuf>").is_empty());
        assert!(nested("Option<[u8; 4]>").is_empty());
    }
}
