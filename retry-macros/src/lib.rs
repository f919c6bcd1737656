//! The `#[db_retry]` attribute. Use it through the `db-retry` crate, which documents it; this
//! crate is an implementation detail and its version is pinned by `db-retry`.

mod expand;
mod parse;
mod signature;
mod transaction;
mod validate;

use proc_macro::TokenStream;

/// Retry an async database function on transient errors. See the `db-retry` crate's docs.
#[proc_macro_attribute]
pub fn db_retry(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::db_retry(args.into(), item.into()).into()
}

#[cfg(test)]
mod expand_tests;
#[cfg(test)]
mod policy_agreement;
