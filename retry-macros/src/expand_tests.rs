//! Expansion snapshots: what the attribute generates, formatted as a reviewer would read it.
//! A change to the generated code shows up as a diff of `src/snapshots/*.snap` in review.

use proc_macro2::TokenStream;
use quote::quote;

fn expand(args: TokenStream, item: TokenStream) -> String {
    let output = crate::expand::db_retry(args, item);
    let file: syn::File = syn::parse2(output.clone())
        .unwrap_or_else(|error| panic!("expansion is not valid Rust: {error}\n{output}"));
    prettyplease::unparse(&file)
}

/// Methods only parse as items inside an impl block.
fn expand_method(args: TokenStream, item: TokenStream) -> String {
    let output = crate::expand::db_retry(args, item);
    let file: syn::File = syn::parse2(quote!(impl UserRepo { #output }))
        .unwrap_or_else(|error| panic!("expansion is not valid Rust: {error}\n{output}"));
    prettyplease::unparse(&file)
}

/// The expansion's tokens as they are, for output that is not a valid file (it carries a
/// `compile_error!`).
fn expand_raw(args: TokenStream, item: TokenStream) -> String {
    crate::expand::db_retry(args, item).to_string()
}

#[test]
fn free_function_with_defaults() {
    insta::assert_snapshot!(expand(
        quote!(max = 3, on = transient),
        quote! {
            /// Finds a user.
            pub async fn find_user(pool: &PgPool, id: i64) -> Result<User, sqlx::Error> {
                sqlx::query_as("SELECT id, name FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_one(pool)
                    .await
            }
        }
    ));
}

#[test]
fn method_with_owned_and_mut_arguments() {
    insta::assert_snapshot!(expand_method(
        quote!(),
        quote! {
            async fn rename(&self, conn: &mut PgConnection, mut name: String, (a, b): (i64, i64)) -> Result<(), RepoError> {
                name.push('!');
                sqlx::query("UPDATE users SET name = $1 WHERE id = $2").bind(&name).bind(a + b).execute(&mut *conn).await?;
                Ok(())
            }
        }
    ));
}

#[test]
fn acquire_mode() {
    insta::assert_snapshot!(expand(
        quote!(on = connection),
        quote! {
            async fn count(#[acquire] conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
                sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&mut *conn).await
            }
        }
    ));
}

#[test]
fn transaction_mode() {
    insta::assert_snapshot!(expand(
        quote!(on = contention, idempotent = false),
        quote! {
            async fn transfer(#[transaction] tx: &mut PgConnection, from: i64, to: i64, amount: i64) -> Result<(), sqlx::Error> {
                sqlx::query("UPDATE accounts SET balance = balance - $1 WHERE id = $2").bind(amount).bind(from).execute(&mut *tx).await?;
                sqlx::query("UPDATE accounts SET balance = balance + $1 WHERE id = $2").bind(amount).bind(to).execute(&mut *tx).await?;
                Ok(())
            }
        }
    ));
}

#[test]
fn custom_classifier() {
    insta::assert_snapshot!(expand(
        quote!(on = crate::errors::is_retryable),
        quote! {
            async fn load(pool: &PgPool) -> anyhow::Result<Vec<u8>> {
                Ok(sqlx::query_scalar("SELECT data FROM blobs LIMIT 1").fetch_one(pool).await?)
            }
        }
    ));
}

#[test]
fn every_key_set() {
    insta::assert_snapshot!(expand(
        quote!(
            max = 5,
            on = transient,
            backoff = exponential,
            base = 50ms,
            cap = 2s,
            jitter = decorrelated,
            deadline = 1m,
            idempotent = true,
            crate = my_app::db_retry,
        ),
        quote! {
            pub(crate) async fn ping<'a, P>(pool: &'a P) -> Result<impl Sized + 'a, sqlx::Error>
            where
                P: Sync,
            {
                Ok(pool)
            }
        }
    ));
}

#[test]
fn breaker_failing_fast() {
    insta::assert_snapshot!(expand(
        quote!(breaker = crate::db::PRIMARY, fail_fast = true),
        quote! {
            async fn find_user(pool: &PgPool, id: i64) -> Result<User, RepoError> {
                Ok(sqlx::query_as("SELECT id, name FROM users WHERE id = $1").bind(id).fetch_one(pool).await?)
            }
        }
    ));
}

#[test]
fn bad_key_keeps_the_function_and_reports_once() {
    insta::assert_snapshot!(expand(
        quote!(retries = 3),
        quote! {
            async fn find(#[acquire] conn: &mut PgConnection) -> Result<(), sqlx::Error> { Ok(()) }
        }
    ));
}

#[test]
fn inner_attributes_stay_in_the_body() {
    insta::assert_snapshot!(expand(
        quote!(),
        quote! {
            async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
                #![allow(clippy::needless_question_mark)]
                Ok(sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await?)
            }
        }
    ));
}

/// What `#[async_trait]` leaves of `async fn find(&mut self, #[acquire] conn: &mut PgConnection,
/// id: i64)`: the retrying goes inside the boxed future.
#[test]
fn async_trait_method() {
    insta::assert_snapshot!(expand_method(
        quote!(max = 2),
        quote! {
            fn find<'life0, 'life1, 'async_trait>(
                &'life0 mut self,
                #[acquire] conn: &'life1 mut PgConnection,
                id: i64,
            ) -> ::core::pin::Pin<Box<
                dyn ::core::future::Future<Output = Result<String, sqlx::Error>>
                    + ::core::marker::Send
                    + 'async_trait,
            >>
            where
                'life0: 'async_trait,
                'life1: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move {
                    if let ::core::option::Option::Some(__ret) =
                        ::core::option::Option::None::<Result<String, sqlx::Error>>
                    {
                        #[allow(unreachable_code)]
                        return __ret;
                    }
                    let mut __self = self;
                    let id = id;
                    let __ret: Result<String, sqlx::Error> = {
                        __self.lookups += 1;
                        sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
                            .bind(id)
                            .fetch_one(&mut *conn)
                            .await
                    };
                    #[allow(unreachable_code)]
                    __ret
                })
            }
        }
    ));
}

#[test]
fn body_that_does_not_parse_keeps_the_rewritten_signature() {
    insta::assert_snapshot!(expand_raw(
        quote!(),
        quote! {
            async fn find(#[acquire] conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
                let n = ;
                Ok(n)
            }
        }
    ));
}

#[test]
fn transaction_with_options_and_attempt_timeout() {
    insta::assert_snapshot!(expand(
        quote!(idempotent = false, attempt_timeout = 2s, deadline = 10s),
        quote! {
            async fn append_entry(
                #[transaction(isolation = serializable, verify_commit)] tx: &mut PgConnection,
                amount: i64,
            ) -> Result<(), sqlx::Error> {
                sqlx::query("INSERT INTO ledger (amount) VALUES ($1)").bind(amount).execute(&mut *tx).await?;
                Ok(())
            }
        }
    ));
}
