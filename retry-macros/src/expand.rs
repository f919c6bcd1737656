//! Code generation: the first attempt runs as plain code; a loop of retries exists only once it
//! has failed.
//!
//! ```text
//! let Path(slug) = __db_retry_arg0;          // pattern arguments, taken apart once
//! let policy = || { static POLICY = …; &POLICY };  // checked at compile time; zero-sized
//! let mut attempt = async || { <clone or reborrow args>; <the user's block> };
//! let (mut retrier, mut delay) = match as_attempt(attempt(), policy).await {
//!     Ok(value) => return Ok(value),
//!     Err(error) => {
//!         let mut retrier = Retrier::new(policy(), "path::to::fn");
//!         <classify error; note what it says about the attempt's connection>
//!         match retrier.retry_after_classified(&error, decided_by, verdict, phase) {
//!             Some(delay) => (retrier, delay),  // the error is dropped here, before any sleep
//!             None => return Err(error),
//!         }
//!     }
//! };
//! Box::pin(async move {
//!     loop {
//!         <roll back and give back the failed attempt's connection>
//!         sleep(delay).await;
//!         delay = match as_attempt(attempt(), policy).await { Ok(value) => return Ok(value), Err(error) => <judge> };
//!     }
//! })
//! .await
//! ```
//!
//! `as_attempt` publishes the call's policy while the attempt is polled, so a retried call
//! nested inside leaves to this one the errors it retries.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::visit_mut::VisitMut;
use syn::{Ident, ItemFn};

use crate::parse::{self, Backoff, BudgetArg, Jitter, RetryOnArg};
use crate::signature::{self, ConnectionMode, Rebind, RewritePlan, SelfKind};
use crate::transaction::{Isolation, TransactionArgs};
use crate::validate::{self, Config};

/// The attribute's entry point on `proc_macro2` types, so tests can call it.
pub(crate) fn db_retry(args: TokenStream, item: TokenStream) -> TokenStream {
    let (config, args_error) = match parse::parse_args(args) {
        (args, Some(error)) => (validate::fallback(args), Some(error)),
        (args, None) => match validate::validate(args.clone()) {
            Ok(config) => (config, None),
            Err(error) => (validate::fallback(args), Some(error)),
        },
    };
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(mut error) => {
            if let Some(args_error) = args_error {
                error.combine(args_error);
            }
            return unparsed_body(item, error, &config);
        }
    };
    let mut rewritten = func.clone();
    let plan = match signature::analyze(&mut rewritten, &config.crate_path) {
        Ok(plan) => plan,
        Err(error) => {
            let error = match args_error {
                Some(mut args_error) => {
                    args_error.combine(error);
                    args_error
                }
                None => error,
            };
            return strip_and_report(func, error);
        }
    };
    // `idempotent = false` needs to see where an attempt stands; a function that takes a pool
    // hides that.
    if let (Some(at), ConnectionMode::FromBody) = (config.not_idempotent_at, &plan.connection_mode)
    {
        let error = syn::Error::new(
            at,
            "`idempotent = false` needs to know what an attempt has already applied, and a \
             function that takes its connections from a pool hides that: take the connection \
             with `#[acquire] conn: &mut PgConnection` (then only failures while getting it are \
             retried) or `#[transaction] tx: &mut PgConnection` (the server rolls a failed \
             attempt back, so it is retried whole), with your driver's connection type; with a \
             pool db-retry cannot take connections from (SeaORM, deadpool), make the write \
             idempotent or set `max = 0`",
        );
        return strip_and_report(func, error);
    }
    if plan.boxed {
        match async_trait_body(&rewritten.block, &plan, &config.crate_path) {
            Ok(inner) => *rewritten.block = inner,
            Err(error) => return strip_and_report(func, error),
        }
    }
    match args_error {
        None => rewrite(rewritten, &config, &plan),
        // Callers of an `#[acquire]` / `#[transaction]` function pass a pool, so next to a bad
        // argument it is still rewritten (with the default schedule): the argument's error stays
        // the only one.
        Some(error) if !matches!(plan.connection_mode, ConnectionMode::FromBody) => {
            with_error(rewrite(rewritten, &config, &plan), error)
        }
        Some(error) => strip_and_report(func, error),
    }
}

/// A function whose body does not parse (typically while someone is typing it): syn's error, and
/// the signature as callers will see it, with a body that type-checks, so the callers of an
/// `#[acquire]` / `#[transaction]` function do not light up with type errors meanwhile.
fn unparsed_body(item: TokenStream, error: syn::Error, config: &Config) -> TokenStream {
    let Ok(loose) = syn::parse2::<LooseFn>(item.clone()) else {
        let error = syn::Error::new(
            Span::call_site(),
            "#[db_retry] applies to an `async fn` with a body",
        );
        return with_error(item, error);
    };
    let mut func = ItemFn {
        attrs: loose.attrs,
        vis: loose.vis,
        sig: loose.sig,
        block: Box::new(syn::parse_quote!({ ::core::unreachable!() })),
    };
    if signature::analyze(&mut func, &config.crate_path).is_err() {
        func.sig = syn::parse2::<LooseFn>(item)
            .map(|loose| loose.sig)
            .unwrap_or(func.sig);
        signature::strip_helpers(&mut func);
    }
    let (outer, inner) = split_inner(&func.attrs);
    let (vis, sig) = (&func.vis, &func.sig);
    let error = error.into_compile_error();
    quote! {
        #(#outer)*
        #[allow(unused_variables)]
        #vis #sig {
            #(#inner)*
            ::core::unreachable!()
        }
        #error
    }
}

/// A function's attributes, signature and body, with the body left as tokens.
struct LooseFn {
    attrs: Vec<syn::Attribute>,
    vis: syn::Visibility,
    sig: syn::Signature,
}

impl syn::parse::Parse for LooseFn {
    fn parse(input: syn::parse::ParseStream) -> syn::Result<Self> {
        let attrs = input.call(syn::Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let _body;
        syn::braced!(_body in input);
        let _: TokenStream = _body.parse()?;
        Ok(LooseFn { attrs, vis, sig })
    }
}

/// Outer attributes go on the function; inner ones (`#![allow(…)]` at the top of the body)
/// stay at the top of its body, where they were written.
fn split_inner(attrs: &[syn::Attribute]) -> (Vec<&syn::Attribute>, Vec<&syn::Attribute>) {
    attrs
        .iter()
        .partition(|attr| matches!(attr.style, syn::AttrStyle::Outer))
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

fn rewrite(func: ItemFn, config: &Config, plan: &RewritePlan) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let crate_path = &config.crate_path;
    let private = quote!(#crate_path::__private);
    let mixed = Span::mixed_site();
    let policy_name = Ident::new("POLICY", mixed);
    let policy_fn = Ident::new("policy", mixed);
    let retrier = Ident::new("retrier", mixed);
    let attempt = Ident::new("attempt", mixed);
    let started = Ident::new("started", mixed);
    let delay = Ident::new("delay", mixed);
    let value = Ident::new("value", mixed);
    let error = Ident::new("error", mixed);
    let verdict = Ident::new("verdict", mixed);

    let name = format!("::{}", sig.ident);
    let name_tokens = quote!(::core::concat!(::core::module_path!(), #name));
    // Named, for the metrics of its first attempt (the retrier gets the name on its own).
    let policy = policy_tokens(config, &private);
    let policy = quote!(#policy.__named(#name_tokens));
    let ret = &plan.ret;
    let fake_return = fake_return(ret);
    let rebinds = rebind_tokens(&plan.rebinds, &private);
    let class = Ident::new("class", mixed);
    let shown = Ident::new("shown", mixed);
    let cause = Ident::new("decided_by", mixed);
    let (classify, verdict_from) = verdict_tokens(&config.on, plan, &private, &error, &class);
    // An error type that can't be shown in the retry event points at `E` in the signature.
    let shown_at = Ident::new("shown", mixed.located_at(plan.error_span));

    // The attempt as a closure the first attempt and the retries share; `checkout` holds the
    // connection of `#[acquire]` / `#[transaction]` between an attempt and its judgement.
    let checkout = Ident::new("connection", mixed);
    let phase = Ident::new("phase", mixed);
    let (setup, closure, call, judge, settle) = match &plan.connection_mode {
        ConnectionMode::FromBody => (
            quote!(),
            quote! {
                async || {
                    #rebinds
                    #fake_return
                    #block
                }
            },
            quote!(()),
            quote!(match #retrier.retry_after_classified(#shown_at, #cause, #verdict, #private::Phase::Statement)),
            quote!(),
        ),
        ConnectionMode::Acquire {
            name: conn,
            conn: conn_ty,
        } => {
            let acquire = sqlx_step(quote!(#checkout.acquire(#conn).await?), plan);
            (
                quote!(let mut #checkout = #private::Checkout::<#conn_ty>::new();),
                quote! {
                    async |#checkout: &mut #private::Checkout<#conn_ty>| {
                        #fake_return
                        let #conn: &mut #conn_ty = #acquire;
                        #rebinds
                        #block
                    }
                },
                quote!((&mut #checkout)),
                quote! {
                    let (#phase, #verdict) = #checkout.judged(#verdict, #cause);
                    match #retrier.retry_after_classified(#shown_at, #cause, #verdict, #phase)
                },
                quote!(#checkout.settle(#retrier.settle_limit(#delay)).await;),
            )
        }
        ConnectionMode::Transaction {
            name: conn,
            conn: conn_ty,
            options,
        } => {
            let transaction = Ident::new("transaction", mixed);
            let checks = transaction_option_checks(options, conn_ty, &private);
            let begin = match transaction_options_tokens(options, &private) {
                Some(options) => quote!(#checkout.begin_with(#conn, #options).await?),
                None => quote!(#checkout.begin(#conn).await?),
            };
            let begin = sqlx_step(begin, plan);
            let commit = match options.verify_commit {
                // Located at the option, where a connection type that cannot verify is named.
                Some(span) => {
                    let verified =
                        located_at(quote!(#private::commit_verified(#transaction).await), span);
                    let question = sqlx_step(quote!(?), plan);
                    quote!(#verified #question)
                }
                None => sqlx_step(quote!(#transaction.commit().await?), plan),
            };
            (
                quote!(let mut #checkout = #private::Checkout::<#conn_ty>::new();),
                quote! {
                    async |#checkout: &mut #private::Checkout<#conn_ty>| {
                        #checks
                        #fake_return
                        let mut #transaction = #begin;
                        let #value = async {
                            let #conn: &mut #conn_ty = &mut #transaction;
                            #rebinds
                            #fake_return
                            #block
                        }
                        .await?;
                        #commit;
                        ::core::result::Result::Ok(#value)
                    }
                },
                quote!((&mut #checkout)),
                quote! {
                    let (#phase, #verdict) = #checkout.judged(#verdict, #cause);
                    match #retrier.retry_after_classified(#shown_at, #cause, #verdict, #phase)
                },
                quote!(#checkout.settle(#retrier.settle_limit(#delay)).await;),
            )
        }
    };

    // The deadline counts from the call's start: the one clock read a policy with a deadline
    // costs on the happy path.
    let (start_clock, new_retrier) = match config.deadline {
        Some(_) => (
            quote!(let #started = #private::Instant::now();),
            quote!(#private::Retrier::started_at(#policy_fn(), #name_tokens, #started)),
        ),
        None => (
            quote!(),
            quote!(#private::Retrier::new(#policy_fn(), #name_tokens)),
        ),
    };

    // Judges a failed attempt: the delay before the next one, or the error returned. The error
    // is judged and dropped before any sleep, so the future is `Send` whenever the body's is.
    let judged = |next: TokenStream| {
        quote! {{
            let (#class, #shown, #cause) = #classify;
            let #verdict = #verdict_from;
            #judge {
                ::core::option::Option::Some(#delay) => #next,
                ::core::option::Option::None => return ::core::result::Result::Err(#error),
            }
        }}
    };
    let first_judged = judged(quote!((#retrier, #delay)));
    let next_judged = judged(quote!(#delay));

    // With `attempt_timeout`, each attempt runs under a timeout: the key's value, or the time
    // left before the deadline when that is shorter (all of the deadline, for the first).
    let timed_out = Ident::new("timed_out", mixed);
    let (timeout_setup, first_attempt, next_attempt) = match config.attempt_timeout {
        None => (
            quote!(),
            quote!((&mut #attempt) #call),
            quote!((&mut #attempt) #call),
        ),
        Some(limit) => {
            let key_span = config.attempt_timeout_at.unwrap_or_else(Span::call_site);
            let first = config
                .deadline
                .map_or(limit, |deadline| limit.min(deadline));
            let nanos = |d: std::time::Duration| {
                let nanos = proc_macro2::Literal::u64_unsuffixed(d.as_nanos() as u64);
                quote!(#private::Duration::from_nanos(#nanos))
            };
            let (first, limit) = (nanos(first), nanos(limit));
            // The error a cancelled attempt ends with, in the function's own error type; a type
            // that cannot hold one is reported at the key.
            let convert = located_at(
                quote! {{
                    use #private::{
                        TimedOutItself as _, TimedOutUnconvertible as _, TimedOutViaSqlx08 as _,
                        TimedOutViaSqlx09 as _,
                    };
                    (&&&#private::TimedOutAs::<<#ret as #private::ResultParts>::Error>::new())
                        .convert(#timed_out)
                }},
                key_span,
            );
            (
                quote!(let #timed_out = |#timed_out: #private::AttemptTimedOut| #convert;),
                quote!(#private::within(#first, (&mut #attempt) #call, #timed_out)),
                quote!(#private::within(#retrier.attempt_limit(#limit), (&mut #attempt) #call, #timed_out)),
            )
        }
    };

    // The first attempt counts against the retry budget (a load and a store on a counter) and,
    // with the runtime's `metrics` feature, in the attempts counter.
    let deposit = quote!(#policy_fn().deposit(););

    // With a breaker, a first attempt that succeeds tells it (one load while it is closed), and
    // with `fail_fast = true` an open breaker ends the call before it starts, with the function's
    // own error made from `CircuitOpen`; an error type without that `From` fails on `true`.
    // The call's admission notes the breaker's state when it started (so a failure from before
    // a change of state is not held against the state after it) and holds a half-open breaker's
    // probe until the call returns.
    let admission = Ident::new("admission", mixed);
    let open = Ident::new("open", mixed);
    let (admit, first_success, new_retrier) = match &config.breaker {
        None => (quote!(), quote!(), new_retrier),
        Some(_) => {
            let admit = match config.fail_fast_at {
                None => quote!(let #admission = #policy_fn().enter();),
                Some(key_span) => {
                    let convert = located_at(
                        quote! {{
                            use #private::{CircuitOpenItself as _, CircuitOpenUnconvertible as _};
                            (&&#private::CircuitOpenAs::<<#ret as #private::ResultParts>::Error>::new())
                                .convert(#open)
                        }},
                        key_span,
                    );
                    quote! {
                        let #admission = match #policy_fn().admit() {
                            ::core::result::Result::Ok(#admission) => #admission,
                            ::core::result::Result::Err(#open) => {
                                return ::core::result::Result::Err(#convert);
                            }
                        };
                    }
                }
            };
            (
                admit,
                quote!(#policy_fn().record_success();),
                quote!(#new_retrier.admitted(&#admission)),
            )
        }
    };
    let first_ok = if first_success.is_empty() {
        quote!(return ::core::result::Result::Ok(#value))
    } else {
        quote!({
            #first_success
            return ::core::result::Result::Ok(#value);
        })
    };

    let destructure = destructure_tokens(&plan.rebinds);
    let body = quote! {
            #destructure
            #start_clock
            #setup
            #timeout_setup
            // The policy, checked at compile time, behind a function that takes no room in the
            // future; its `static` is in a block of its own, as items aren't hygienic.
            let #policy_fn = || {
                static #policy_name: #private::RetryPolicy = #policy;
                &#policy_name
            };
            let mut #attempt = #closure;
            #admit
            #deposit
            let (mut #retrier, mut #delay) = match #private::as_attempt(#first_attempt, #policy_fn).await {
                ::core::result::Result::Ok(#value) => #first_ok,
                ::core::result::Result::Err(#error) => {
                    let mut #retrier = #new_retrier;
                    #first_judged
                }
            };
            // Only a call whose first attempt failed gets here. Its retry loop is boxed, so that
            // its state is not part of every call's future.
            ::std::boxed::Box::pin(async move {
                loop {
                    #settle
                    #private::sleep(#delay).await;
                    #delay = match #private::as_attempt(#next_attempt, #policy_fn).await {
                        ::core::result::Result::Ok(#value) => {
                            #retrier.succeeded();
                            return ::core::result::Result::Ok(#value);
                        }
                        ::core::result::Result::Err(#error) => #next_judged,
                    };
                }
            })
            .await
    };
    // An `#[async_trait]` method returns its future boxed: retry inside it.
    let body = if plan.boxed {
        quote!(::std::boxed::Box::pin(async move { #body }))
    } else {
        body
    };
    let (outer, inner) = split_inner(&attrs);
    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #body
        }
    }
}

/// The block inside `Box::pin(async move { … })`, the body `#[async_trait]` gives a method, as
/// one attempt: its `let __self = self;` becomes a copy the attempt can make again and again.
fn async_trait_body(
    block: &syn::Block,
    plan: &RewritePlan,
    crate_path: &syn::Path,
) -> syn::Result<syn::Block> {
    // On the first statement that isn't the shape, not the whole body.
    let shape_error = || {
        let at: &dyn ToTokens = match block.stmts.first() {
            Some(first) => first,
            None => block,
        };
        syn::Error::new_spanned(
            at,
            "#[db_retry] on a function that returns a boxed future expects the body \
             `#[async_trait]` gives it, `Box::pin(async move { … })`; on your own code, write an \
             `async fn` instead",
        )
    };
    let [syn::Stmt::Expr(syn::Expr::Call(call), None)] = block.stmts.as_slice() else {
        return Err(shape_error());
    };
    let is_box_pin = matches!(&*call.func, syn::Expr::Path(path)
        if path.path.segments.len() >= 2
            && path.path.segments.iter().rev().take(2).map(|s| s.ident.to_string()).eq(["pin", "Box"]));
    let (true, Some(syn::Expr::Async(inner)), 1) = (is_box_pin, call.args.first(), call.args.len())
    else {
        return Err(shape_error());
    };
    let mut inner = inner.block.clone();
    let receiver = plan.rebinds.iter().find_map(|rebind| match rebind {
        Rebind::Receiver(kind) => Some(*kind),
        _ => None,
    });
    // `#[async_trait]` moves `self` into `__self`; each attempt needs its own: a reborrow, or a
    // clone for an owned receiver. Other attributes may have nested the statement (tracing's
    // `#[instrument]` wraps the body in a block of its own), so it is looked for everywhere.
    let replacement: Option<syn::Expr> = match receiver {
        Some(SelfKind::RefMut) => Some(syn::parse_quote!(&mut *self)),
        Some(SelfKind::PinMut) => Some(syn::parse_quote!(self.as_mut())),
        Some(SelfKind::Owned) => Some(syn::parse_quote!({
            use #crate_path::__private::{CloneForAttempt as _, NotCloneForAttempt as _};
            (&&#crate_path::__private::ArgOf(&self)).for_attempt()
        })),
        Some(SelfKind::Ref) | None => None,
    };
    if let Some(replacement) = replacement {
        // Taken once at the top of the attempt, so a statement nested in an `async move` block
        // moves the attempt's own copy, not the closure's captured `self`.
        let own = Ident::new("own_self", Span::mixed_site());
        let mut rename = RenameOfSelf {
            replacement: syn::parse_quote!(#own),
            found: false,
        };
        rename.visit_block_mut(&mut inner);
        inner
            .stmts
            .insert(0, syn::parse_quote!(let #own = #replacement;));
        if !rename.found {
            return Err(syn::Error::new_spanned(
                block,
                "#[db_retry] could not find where `#[async_trait]` takes `self` \
                 (`let __self = self;`) to give each attempt its own; take `&self`, or put \
                 #[db_retry] on an inherent `async fn` the trait method calls",
            ));
        }
    }
    Ok(inner)
}

/// Replaces the `self` of `let __self = self;` wherever it is.
struct RenameOfSelf {
    replacement: syn::Expr,
    found: bool,
}

impl VisitMut for RenameOfSelf {
    fn visit_local_mut(&mut self, local: &mut syn::Local) {
        let renames_self = matches!(&local.pat, syn::Pat::Ident(pat) if pat.ident == "__self");
        if let Some(init) = local.init.as_mut().filter(|_| renames_self) {
            if matches!(&*init.expr, syn::Expr::Path(path) if path.path.is_ident("self")) {
                *init.expr = self.replacement.clone();
                self.found = true;
            }
        }
        syn::visit_mut::visit_local_mut(self, local);
    }

    // Items nested in the body have their own `self`.
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
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

/// The pattern arguments taken apart once, before the first attempt.
fn destructure_tokens(rebinds: &[Rebind]) -> TokenStream {
    rebinds
        .iter()
        .map(|rebind| match rebind {
            Rebind::Destructure {
                pat, source, cfg, ..
            } => quote!(#(#cfg)* let #pat = #source;),
            _ => quote!(),
        })
        .collect()
}

fn rebind_tokens(rebinds: &[Rebind], private: &TokenStream) -> TokenStream {
    rebinds
        .iter()
        .map(|rebind| match rebind {
            Rebind::AsIs | Rebind::Receiver(_) => quote!(),
            Rebind::Destructure { bindings, cfg, .. } => bindings
                .iter()
                .map(|(ident, mutability)| {
                    // "not Clone" points at the binding in the user's pattern.
                    let clone = located_at(
                        quote! {{
                            use #private::{CloneForAttempt as _, NotCloneForAttempt as _};
                            (&&#private::ArgOf(&#ident)).for_attempt()
                        }},
                        ident.span(),
                    );
                    quote!(#(#cfg)* let #mutability #ident = #clone;)
                })
                .collect(),
            Rebind::Reborrow { ident, cfg } => quote!(#(#cfg)* let #ident = &mut *#ident;),
            Rebind::Clone {
                pat,
                source,
                ty_span,
                cfg,
            } => {
                // "not Clone" points at the argument's type.
                let mut source = source.clone();
                source.set_span(source.span().located_at(*ty_span));
                let clone = located_at(
                    quote! {{
                        use #private::{CloneForAttempt as _, NotCloneForAttempt as _};
                        (&&#private::ArgOf(&#source)).for_attempt()
                    }},
                    *ty_span,
                );
                quote!(#(#cfg)* let #pat = #clone;)
            }
        })
        .collect()
}

/// A step that can fail with `sqlx::Error`, whose `?` converts that into the function's error
/// type: if it can't, the error points at `E` in the signature.
fn sqlx_step(step: TokenStream, plan: &RewritePlan) -> TokenStream {
    located_at(step, plan.error_span)
}

/// The classification of `error`, and its conversion from `class` to a `Verdict`. Type errors in
/// them point at the user's token: the classifier's name, or `E` in the signature.
fn verdict_tokens(
    on: &RetryOnArg,
    plan: &RewritePlan,
    private: &TokenStream,
    error: &Ident,
    class: &Ident,
) -> (TokenStream, TokenStream) {
    let span = match on {
        RetryOnArg::Classifier(path) => path
            .segments
            .last()
            .map_or(plan.error_span, |last| last.ident.span()),
        RetryOnArg::Transient | RetryOnArg::Connection | RetryOnArg::Contention => plan.error_span,
    };
    // The class, and the error as the retry event shows it, in one expression: an error type
    // that can't be classified (or shown) is one compile error, not one for each use.
    let classify = match on {
        RetryOnArg::Classifier(path) => {
            let args = located_at(quote!((&#error)), span);
            let shown = located_at(quote!(&#error), plan.error_span);
            quote!((#path #args, #shown, ::core::option::Option::None))
        }
        RetryOnArg::Transient | RetryOnArg::Connection | RetryOnArg::Contention => located_at(
            quote! {{
                use #private::{ClassifyItself as _, ClassifyTarget as _, Unclassified as _};
                (&&#private::ErrorOf(&#error)).judge()
            }},
            span,
        ),
    };
    let verdict = located_at(quote!(#private::Verdict::from(#class)), span);
    (classify, verdict)
}

/// The options a `#[transaction(...)]` begins with, as a `&'static TransactionOptions`; `None`
/// for a plain `BEGIN`.
fn transaction_options_tokens(
    options: &TransactionArgs,
    private: &TokenStream,
) -> Option<TokenStream> {
    if !options.begins_with_options() {
        return None;
    }
    let isolation = match options.isolation {
        Some((level, _)) => {
            let level = match level {
                Isolation::ReadCommitted => quote!(ReadCommitted),
                Isolation::RepeatableRead => quote!(RepeatableRead),
                Isolation::Serializable => quote!(Serializable),
            };
            quote!(::core::option::Option::Some(#private::Isolation::#level))
        }
        None => quote!(::core::option::Option::None),
    };
    let (read_only, deferrable, immediate) = (
        options.read_only.is_some(),
        options.deferrable.is_some(),
        options.immediate.is_some(),
    );
    Some(quote! {
        &#private::TransactionOptions {
            isolation: #isolation,
            read_only: #read_only,
            deferrable: #deferrable,
            immediate: #immediate,
        }
    })
}

/// Compile-time checks that the connection type has each option used, reported at the option.
fn transaction_option_checks(
    options: &TransactionArgs,
    conn_ty: &syn::Type,
    private: &TokenStream,
) -> TokenStream {
    let used = [
        (options.isolation.map(|(_, span)| span), "isolation"),
        (options.read_only, "read_only"),
        (options.deferrable, "deferrable"),
        (options.immediate, "immediate"),
    ];
    used.into_iter()
        .filter_map(|(span, name)| {
            let span = span?;
            let check = Ident::new(name, span);
            Some(located_at(
                quote!(#private::supports::#check::<#conn_ty>();),
                span,
            ))
        })
        .collect()
}

/// `tokens` reported at `span`, resolving names as before.
fn located_at(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut moved = Group::new(group.delimiter(), located_at(group.stream(), span));
                moved.set_span(group.span().located_at(span));
                token = TokenTree::Group(moved);
            } else {
                token.set_span(token.span().located_at(span));
            }
            token
        })
        .collect()
}

pub(crate) fn policy_tokens(config: &Config, private: &TokenStream) -> TokenStream {
    let max = proc_macro2::Literal::u32_unsuffixed(config.max);
    let retry_on = match config.on {
        RetryOnArg::Transient | RetryOnArg::Classifier(_) => quote!(Transient),
        RetryOnArg::Connection => quote!(Connection),
        RetryOnArg::Contention => quote!(Contention),
    };
    let backoff = match config.backoff {
        Backoff::Exponential => quote!(Exponential),
        Backoff::Fixed => quote!(Fixed),
        Backoff::None => quote!(None),
    };
    let jitter = match config.jitter {
        Jitter::Full => quote!(Full),
        Jitter::Equal => quote!(Equal),
        Jitter::Decorrelated => quote!(Decorrelated),
        Jitter::None => quote!(None),
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
    let policy = quote! {
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
    };
    let policy = match &config.budget {
        None => policy,
        Some(BudgetArg::Unlimited) => {
            quote!(#policy.__with_budget(::core::option::Option::None))
        }
        // A path that is not a `static RetryBudget` is a type error on the path.
        Some(BudgetArg::Named(path)) => {
            let budget = located_at(
                quote!(#private::RetryBudget::named(&#path)),
                last_ident(path),
            );
            quote!(#policy.__with_budget(::core::option::Option::Some(#budget)))
        }
    };
    match &config.breaker {
        None => policy,
        // As with a budget: a path that is not a `static CircuitBreaker` fails on the path.
        Some(path) => {
            let breaker = located_at(
                quote!(#private::CircuitBreaker::named(&#path)),
                last_ident(path),
            );
            quote!(#policy.__with_breaker(#breaker))
        }
    }
}

/// Where a path's last segment was written: where a type error about what it names belongs.
fn last_ident(path: &syn::Path) -> Span {
    path.segments
        .last()
        .map_or_else(Span::call_site, |last| last.ident.span())
}
