//! The code `#[mutation]` writes beside the function.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{ItemFn, LitStr, Visibility};

use crate::signature;

/// The attribute's own arguments: `name = "..."`.
fn wire_name(attr: TokenStream, function: &ItemFn) -> syn::Result<LitStr> {
    let mut name: Option<LitStr> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            let value: LitStr = meta.value()?.parse()?;
            if value.value().trim().is_empty() {
                return Err(syn::Error::new(
                    value.span(),
                    "a mutation's name cannot be empty",
                ));
            }
            name = Some(value);
            Ok(())
        } else {
            Err(meta.error("#[mutation] takes only `name = \"...\"`"))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(name
        .unwrap_or_else(|| LitStr::new(&function.sig.ident.to_string(), function.sig.ident.span())))
}

/// Inside the generated module, the visibility that reaches as far as the
/// function's does outside it (the module is one level down).
fn inner_visibility(vis: &Visibility) -> syn::Result<TokenStream> {
    match vis {
        Visibility::Public(_) => Ok(quote!(pub)),
        Visibility::Inherited => Ok(quote!(pub(super))),
        Visibility::Restricted(restricted) => {
            let path = &restricted.path;
            if path.is_ident("crate")
                || path.leading_colon.is_some()
                || path.segments.first().is_some_and(|s| s.ident == "crate")
            {
                Ok(quote!(pub(in #path)))
            } else if path.is_ident("self") {
                Ok(quote!(pub(super)))
            } else if path.segments.first().is_some_and(|s| s.ident == "super") {
                Ok(quote!(pub(in super::#path)))
            } else {
                Err(syn::Error::new_spanned(
                    vis,
                    "#[mutation] supports `pub`, `pub(crate)`, `pub(super)`, `pub(in crate::...)` \
                     or private functions",
                ))
            }
        }
    }
}

pub(crate) fn mutation(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let function: ItemFn = syn::parse2(item)?;
    let name = wire_name(attr, &function)?;
    let sig = signature::read(&function)?;
    let vis = &function.vis;
    let inner_vis = inner_visibility(vis)?;
    let ident = &function.sig.ident;
    let output = &sig.output;
    let fields = sig.args.iter().map(|a| &a.name).collect::<Vec<_>>();
    let types = sig.args.iter().map(|a| &a.ty).collect::<Vec<_>>();
    let args_doc = format!(
        "The arguments of the `{}` mutation (see [`{ident}`](fn@super::{ident})).",
        name.value()
    );
    let module_doc = format!(
        "`{}` as a mutation: `repo.write({ident}::args(...))`.",
        name.value()
    );
    let tx = format_ident!("tx");
    Ok(quote! {
        #function

        #[doc = #module_doc]
        #vis mod #ident {
            #[allow(unused_imports)]
            use super::*;

            #[doc = #args_doc]
            #[derive(::fly_postgres::__private::serde::Serialize, ::fly_postgres::__private::serde::Deserialize)]
            #[serde(crate = "::fly_postgres::__private::serde")]
            #inner_vis struct Args {
                #(
                    #[allow(missing_docs)]
                    #inner_vis #fields: #types,
                )*
            }

            /// The mutation, ready for `Repo::write`.
            #[allow(clippy::too_many_arguments)]
            #inner_vis fn args(#(#fields: #types),*) -> Args {
                Args { #(#fields),* }
            }

            impl ::fly_postgres::Mutation for Args {
                const NAME: &'static str = #name;
                type Output = #output;

                async fn run(
                    self,
                    #tx: &mut ::fly_postgres::sqlx::PgConnection,
                ) -> ::core::result::Result<#output, ::fly_postgres::Error> {
                    super::#ident(#tx, #(self.#fields),*)
                        .await
                        .map_err(::core::convert::Into::into)
                }
            }

            ::fly_postgres::__private::inventory::submit! {
                ::fly_postgres::__private::AutoMutation::of::<Args>()
            }
        }
    })
}
