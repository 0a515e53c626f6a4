//! `#[fly_postgres::mutation]`: a write as one `async fn`. Use it through
//! `fly-postgres`, which re-exports it; this crate is its proc-macro half.
//!
// Not run as a doctest: needs a running database (fly-postgres's crate doc runs a write).
//! ```no_run
//! use fly_postgres::{Error, Repo, sqlx::{self, PgConnection}};
//!
//! #[fly_postgres::mutation]
//! async fn create_todo(tx: &mut PgConnection, title: String) -> Result<i64, Error> {
//!     Ok(sqlx::query_scalar("insert into todos (title) values ($1) returning id")
//!         .bind(title)
//!         .fetch_one(&mut *tx)
//!         .await?)
//! }
//!
//! # async fn demo(repo: Repo) -> Result<(), Error> {
//! let id = repo.write(create_todo::args("buy milk".into())).await?;
//! # Ok(()) }
//! # fn main() {}
//! ```
//!
//! The function stays as written. Beside it comes a module of the same
//! name with `Args` (the arguments after `tx`, as a serializable struct
//! with public fields), `args(...)` to build it, the `Mutation` impl
//! (`NAME`: the function's name, or `name = "..."` to pin it across
//! renames) and its registration, so no builder line is needed. Put it at
//! module level: the generated module reaches the function and the types
//! it names through `super`, which a function body's items are not in.

mod expand;
mod signature;

use proc_macro::TokenStream;

/// Turns `async fn f(tx: &mut PgConnection, args...) -> Result<T, E>` into a
/// mutation `f::Args`, built with `f::args(args...)`, named `"f"` (or
/// `#[mutation(name = "...")]`), registered on every repo the program
/// starts. See the `fly-postgres` crate docs.
#[proc_macro_attribute]
pub fn mutation(attr: TokenStream, item: TokenStream) -> TokenStream {
    let original: proc_macro2::TokenStream = item.clone().into();
    match expand::mutation(attr.into(), item.into()) {
        Ok(expanded) => expanded.into(),
        // The function as written stays, so the error is the only one.
        Err(error) => {
            let error = error.into_compile_error();
            quote::quote!(#error #original).into()
        }
    }
}
