//! What the attribute accepts: an `async fn` whose first argument is the
//! transaction and whose other arguments travel between regions.

use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type};

/// One argument after `tx`.
pub(crate) struct Arg {
    pub(crate) name: syn::Ident,
    pub(crate) ty: Type,
}

/// The parts of the function the expansion needs.
pub(crate) struct Signature {
    pub(crate) args: Vec<Arg>,
    pub(crate) output: Type,
}

const TX_RULE: &str =
    "the first argument of a #[mutation] is the transaction: `tx: &mut PgConnection`";

pub(crate) fn read(function: &ItemFn) -> syn::Result<Signature> {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "a #[mutation] must be an `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a #[mutation] cannot be generic: its arguments are one concrete type on the wire",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Typed(first)) if is_connection(&first.ty) => {}
        Some(other) => return Err(syn::Error::new(other.span(), TX_RULE)),
        None => return Err(syn::Error::new(sig.inputs.span(), TX_RULE)),
    }
    let mut args = Vec::new();
    for input in inputs {
        let FnArg::Typed(typed) = input else {
            return Err(syn::Error::new(
                input.span(),
                "a #[mutation] takes no `self`",
            ));
        };
        let Pat::Ident(pat) = &*typed.pat else {
            return Err(syn::Error::new(
                typed.pat.span(),
                "#[mutation] arguments need plain names (they become the fields of its `Args`)",
            ));
        };
        if let Type::Reference(reference) = &*typed.ty {
            return Err(syn::Error::new(
                reference.span(),
                "#[mutation] arguments travel to the primary region: take owned values \
                 (`String`, not `&str`)",
            ));
        }
        args.push(Arg {
            name: pat.ident.clone(),
            ty: (*typed.ty).clone(),
        });
    }
    let output = ok_type(&sig.output).ok_or_else(|| {
        let span = match &sig.output {
            ReturnType::Type(_, ty) => ty.span(),
            ReturnType::Default => sig.paren_token.span.close(),
        };
        syn::Error::new(
            span,
            "a #[mutation] returns `Result<Output, fly_postgres::Error>` (or an error type that \
             converts into it)",
        )
    })?;
    Ok(Signature { args, output })
}

/// `&mut PgConnection` (any path ending in it).
fn is_connection(ty: &Type) -> bool {
    let Type::Reference(reference) = ty else {
        return false;
    };
    if reference.mutability.is_none() {
        return false;
    }
    matches!(&*reference.elem, Type::Path(path)
        if path.path.segments.last().is_some_and(|s| s.ident == "PgConnection"))
}

/// `T` of a `Result<T, E>` return type.
fn ok_type(output: &ReturnType) -> Option<Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(path) = &**ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    match generics.args.first()? {
        GenericArgument::Type(ok) => Some(ok.clone()),
        _ => None,
    }
}
