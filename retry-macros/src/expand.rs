//! Code generation: the function body becomes a loop of attempts.
//!
//! ```text
//! static POLICY = …;                       // the attribute's policy, checked at compile time
//! let mut retrier = Retrier::new(&POLICY, "path::to::fn");
//! loop {
//!     let delay = match async { <rebind args>; <the user's block> }.await {
//!         Ok(value) => return Ok(value),
//!         Err(error) => match retrier.retry_after(&error, <classify error>) {
//!             Some(delay) => delay,   // the error is dropped here, before the sleep
//!             None => return Err(error),
//!         },
//!     };
//!     sleep(delay).await;
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::{Ident, ItemFn};

use crate::parse::{self, BackoffKind, JitterKind, On};
use crate::signature::{self, Analysis, Rebind, Unit};
use crate::validate::{self, Config};

/// The attribute's entry point on `proc_macro2` types, so tests can call it.
pub(crate) fn db_retry(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "#[db_retry] applies to an `async fn` with a body",
            );
            return with_error(item, error);
        }
    };
    let config = match parse::parse_args(args).and_then(validate::validate) {
        Ok(config) => config,
        Err(error) => return strip_and_report(func, error),
    };
    let analysis = {
        let mut rewritten = func.clone();
        match signature::analyze(&mut rewritten, &config.krate) {
            Ok(analysis) => {
                func = rewritten;
                analysis
            }
            Err(error) => return strip_and_report(func, error),
        }
    };
    rewrite(func, &config, &analysis)
}

/// Emit the function as written (without our parameter helpers) and the error, so the user sees
/// the one error and not a cascade of "cannot find function" errors from its callers.
fn strip_and_report(mut func: ItemFn, error: syn::Error) -> TokenStream {
    signature::strip_helpers(&mut func);
    with_error(func.into_token_stream(), error)
}

fn with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    quote!(#item #error)
}

fn rewrite(func: ItemFn, config: &Config, analysis: &Analysis) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let krate = &config.krate;
    let private = quote!(#krate::__private);
    let mixed = Span::mixed_site();
    let policy_name = Ident::new("POLICY", mixed);
    let retrier = Ident::new("retrier", mixed);
    let delay = Ident::new("delay", mixed);
    let value = Ident::new("value", mixed);
    let error = Ident::new("error", mixed);
    let verdict = Ident::new("verdict", mixed);

    let policy = policy_tokens(config, &private);
    let name = format!("::{}", sig.ident);
    let ret = &analysis.ret;
    let fake_return = fake_return(ret);
    let rebinds = rebind_tokens(&analysis.rebinds, &private);
    let classify = classify_tokens(&config.on, &private, &error);

    let (setup, attempt, release, judge) = match &analysis.unit {
        Unit::Plain => (
            quote!(),
            quote! {
                async {
                    #rebinds
                    #fake_return
                    #block
                }
            },
            quote!(),
            quote!(#retrier.retry_after(&#error, #verdict)),
        ),
        Unit::Acquire {
            name: conn,
            conn: conn_ty,
        } => {
            let connection = Ident::new("connection", mixed);
            (
                quote!(let mut #connection = ::core::option::Option::None;),
                quote! {
                    async {
                        #fake_return
                        let #conn: &mut #conn_ty =
                            &mut **#connection.insert(#private::acquire(#conn).await?);
                        #rebinds
                        #block
                    }
                },
                quote!(#private::release(#connection, #verdict);),
                quote!(#retrier.retry_after(&#error, #verdict)),
            )
        }
        Unit::Transaction {
            name: conn,
            conn: conn_ty,
        } => {
            let connection = Ident::new("connection", mixed);
            let transaction = Ident::new("transaction", mixed);
            let phase = Ident::new("phase", mixed);
            (
                quote! {
                    let mut #connection = ::core::option::Option::None;
                    let mut #phase = #private::Phase::Transaction;
                },
                quote! {
                    async {
                        #fake_return
                        let mut #transaction =
                            #private::begin(#connection.insert(#private::acquire(#conn).await?)).await?;
                        let #value = async {
                            let #conn: &mut #conn_ty = &mut *#transaction;
                            #rebinds
                            #fake_return
                            #block
                        }
                        .await?;
                        #phase = #private::Phase::Commit;
                        #transaction.commit().await?;
                        ::core::result::Result::Ok(#value)
                    }
                },
                quote!(#private::release(#connection, #verdict);),
                quote!(#retrier.retry_after_in(&#error, #verdict, #phase)),
            )
        }
    };

    quote! {
        #(#attrs)*
        #vis #sig {
            static #policy_name: #private::RetryPolicy = #policy;
            let mut #retrier = #private::Retrier::new(
                &#policy_name,
                ::core::concat!(::core::module_path!(), #name),
            );
            loop {
                #setup
                let #delay = match #attempt.await {
                    ::core::result::Result::Ok(#value) => {
                        #retrier.succeeded();
                        return ::core::result::Result::Ok(#value);
                    }
                    ::core::result::Result::Err(#error) => {
                        let #verdict = #private::Verdict::from(#classify);
                        #release
                        match #judge {
                            ::core::option::Option::Some(#delay) => #delay,
                            ::core::option::Option::None => return ::core::result::Result::Err(#error),
                        }
                    }
                };
                #private::sleep(#delay).await;
            }
        }
    }
}

/// Pins the type of an attempt's block to the function's return type, so `?` converts errors as
/// it would in the original function and an early `return` cannot confuse inference.
fn fake_return(ret: &syn::Type) -> TokenStream {
    let fake = Ident::new("fake_return", Span::mixed_site());
    quote! {
        #[allow(
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::needless_return
        )]
        if false {
            let #fake: #ret = loop {};
            return #fake;
        }
    }
}

fn rebind_tokens(rebinds: &[Rebind], private: &TokenStream) -> TokenStream {
    rebinds
        .iter()
        .map(|rebind| match rebind {
            Rebind::AsIs => quote!(),
            Rebind::Reborrow(ident) => quote!(let #ident = &mut *#ident;),
            Rebind::Clone {
                pat,
                source,
                ty_span,
            } => {
                let clone = quote_spanned!(*ty_span=> #private::clone_arg(&#source));
                quote!(let #pat = #clone;)
            }
        })
        .collect()
}

fn classify_tokens(on: &On, private: &TokenStream, error: &Ident) -> TokenStream {
    match on {
        On::Classifier(path) => quote!(#path(&#error)),
        On::Transient | On::Connection | On::Contention => quote! {{
            use #private::AttemptError as _;
            #error.__db_retry_class()
        }},
    }
}

fn policy_tokens(config: &Config, private: &TokenStream) -> TokenStream {
    let max = proc_macro2::Literal::u32_unsuffixed(config.max);
    let retry_on = match config.on {
        On::Transient | On::Classifier(_) => quote!(Transient),
        On::Connection => quote!(Connection),
        On::Contention => quote!(Contention),
    };
    let backoff = match config.backoff {
        BackoffKind::Exponential => quote!(Exponential),
        BackoffKind::Fixed => quote!(Fixed),
        BackoffKind::None => quote!(None),
    };
    let jitter = match config.jitter {
        JitterKind::Full => quote!(Full),
        JitterKind::Equal => quote!(Equal),
        JitterKind::Decorrelated => quote!(Decorrelated),
        JitterKind::None => quote!(None),
    };
    let millis = |d: std::time::Duration| {
        let ms = proc_macro2::Literal::u64_unsuffixed(d.as_millis() as u64);
        quote!(#private::Duration::from_millis(#ms))
    };
    let base = millis(config.base);
    let cap = millis(config.cap);
    let deadline = match config.deadline {
        Some(d) => {
            let d = millis(d);
            quote!(::core::option::Option::Some(#d))
        }
        None => quote!(::core::option::Option::None),
    };
    let idempotent = config.idempotent;
    quote! {
        #private::RetryPolicy::__from_validated(
            #max,
            #private::RetryOn::#retry_on,
            #private::Backoff::#backoff,
            #base,
            #cap,
            #private::Jitter::#jitter,
            #deadline,
            #idempotent,
        )
    }
}
