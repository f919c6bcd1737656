//! The attribute and the runtime builder accept exactly the same policies and build the same
//! ones: every combination of given and omitted settings is written as attribute arguments,
//! parsed, validated and turned into the `RetryPolicy` the expansion emits, and compared with
//! what `RetryPolicy::builder()` makes of the same settings.

use std::time::Duration;

use db_retry_runtime::{Backoff, Jitter, PolicyError, RetryOn, RetryPolicy};
use quote::quote;
use syn::{Expr, ExprCall, Lit};

use crate::{expand, parse, validate};

/// The words the attribute's message uses for the rule the builder reports.
fn attribute_words(error: &PolicyError) -> &'static [&'static str] {
    match error {
        PolicyError::TooManyRetries { .. } => &["is out of range"],
        PolicyError::CapBelowBase { .. } => &[
            "the cap must be at least",
            "below the default `base`",
            "above the default `cap`",
        ],
        PolicyError::ZeroBase => &["from `base = 0` never waits"],
        PolicyError::JitterWithoutBackoff => &["has no effect with `backoff = none`"],
        PolicyError::DecorrelatedNeedsExponential => &["requires `backoff = exponential`"],
        PolicyError::ZeroDeadline => &["a `deadline` of zero"],
        other => panic!("a rule without attribute words: {other:?}"),
    }
}

/// The policy the expansion would emit: the arguments of its `RetryPolicy::__from_validated`.
fn emitted(config: &validate::Config) -> RetryPolicy {
    let tokens = expand::policy_tokens(config, &quote!(p));
    let call: ExprCall = syn::parse2(tokens).expect("a call");
    let args: Vec<&Expr> = call.args.iter().collect();
    let int = |expr: &Expr| match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Int(int) => int.base10_parse::<u64>().expect("an integer"),
            other => panic!("not an integer: {}", quote!(#other)),
        },
        other => panic!("not a literal: {}", quote!(#other)),
    };
    let variant = |expr: &Expr| match expr {
        Expr::Path(path) => path.path.segments.last().expect("a path").ident.to_string(),
        other => panic!("not a path: {}", quote!(#other)),
    };
    let millis = |expr: &Expr| match expr {
        Expr::Call(call) => Duration::from_millis(int(&call.args[0])),
        other => panic!("not Duration::from_millis(..): {}", quote!(#other)),
    };
    let Expr::Lit(idempotent) = args[7] else {
        panic!("idempotent is not a literal");
    };
    let Lit::Bool(idempotent) = &idempotent.lit else {
        panic!("idempotent is not a bool");
    };
    // What the expansion's `static POLICY` holds: the same constructor, the same arguments.
    RetryPolicy::__from_validated(
        int(args[0]) as u32,
        match variant(args[1]).as_str() {
            "Transient" => RetryOn::Transient,
            "Connection" => RetryOn::Connection,
            "Contention" => RetryOn::Contention,
            other => panic!("RetryOn::{other}"),
        },
        match variant(args[2]).as_str() {
            "Exponential" => Backoff::Exponential,
            "Fixed" => Backoff::Fixed,
            "None" => Backoff::None,
            other => panic!("Backoff::{other}"),
        },
        millis(args[3]),
        millis(args[4]),
        match variant(args[5]).as_str() {
            "Full" => Jitter::Full,
            "Equal" => Jitter::Equal,
            "Decorrelated" => Jitter::Decorrelated,
            "None" => Jitter::None,
            other => panic!("Jitter::{other}"),
        },
        match args[6] {
            Expr::Call(some) => Some(millis(&some.args[0])),
            _ => None,
        },
        idempotent.value,
    )
}

#[test]
fn every_combination_is_judged_and_built_alike() {
    let maxes = [None, Some(0), Some(3), Some(100), Some(101)];
    let ons = [
        None,
        Some("transient"),
        Some("connection"),
        Some("contention"),
    ];
    let backoffs = [None, Some("exponential"), Some("fixed"), Some("none")];
    let delays = [
        None,
        Some(0u64),
        Some(1),
        Some(100),
        Some(5000),
        Some(60_000),
    ];
    let jitters = [
        None,
        Some("full"),
        Some("equal"),
        Some("decorrelated"),
        Some("none"),
    ];
    let deadlines = [None, Some(0u64), Some(1000)];
    let idempotents = [None, Some(false)];

    let (mut accepted, mut rejected) = (0, 0);
    for max in maxes {
        for on in ons {
            for backoff in backoffs {
                for base in delays {
                    for cap in delays {
                        for jitter in jitters {
                            for deadline in deadlines {
                                for idempotent in idempotents {
                                    let mut written = Vec::new();
                                    let mut builder = RetryPolicy::builder();
                                    if let Some(max) = max {
                                        written.push(format!("max = {max}"));
                                        builder = builder.max_retries(max);
                                    }
                                    if let Some(on) = on {
                                        written.push(format!("on = {on}"));
                                        builder = builder.retry_on(match on {
                                            "transient" => RetryOn::Transient,
                                            "connection" => RetryOn::Connection,
                                            _ => RetryOn::Contention,
                                        });
                                    }
                                    if let Some(backoff) = backoff {
                                        written.push(format!("backoff = {backoff}"));
                                        builder = builder.backoff(match backoff {
                                            "exponential" => Backoff::Exponential,
                                            "fixed" => Backoff::Fixed,
                                            _ => Backoff::None,
                                        });
                                    }
                                    if let Some(base) = base {
                                        written.push(format!("base = {base}ms"));
                                        builder = builder.base(Duration::from_millis(base));
                                    }
                                    if let Some(cap) = cap {
                                        written.push(format!("cap = {cap}ms"));
                                        builder = builder.cap(Duration::from_millis(cap));
                                    }
                                    if let Some(jitter) = jitter {
                                        written.push(format!("jitter = {jitter}"));
                                        builder = builder.jitter(match jitter {
                                            "full" => Jitter::Full,
                                            "equal" => Jitter::Equal,
                                            "decorrelated" => Jitter::Decorrelated,
                                            _ => Jitter::None,
                                        });
                                    }
                                    if let Some(deadline) = deadline {
                                        written.push(format!("deadline = {deadline}ms"));
                                        builder = builder.deadline(Duration::from_millis(deadline));
                                    }
                                    if let Some(idempotent) = idempotent {
                                        written.push(format!("idempotent = {idempotent}"));
                                        builder = builder.idempotent(idempotent);
                                    }
                                    let written = written.join(", ");
                                    let tokens = written.parse().expect("arguments tokenize");
                                    let (args, parse_error) = parse::parse_args(tokens);
                                    assert!(parse_error.is_none(), "#[db_retry({written})] parses");
                                    match (validate::validate(args), builder.build()) {
                                        (Ok(config), Ok(policy)) => {
                                            accepted += 1;
                                            assert_eq!(
                                                emitted(&config),
                                                policy,
                                                "#[db_retry({written})]"
                                            );
                                        }
                                        (Err(error), Err(policy_error)) => {
                                            rejected += 1;
                                            let message = error.to_string();
                                            assert!(
                                                attribute_words(&policy_error)
                                                    .iter()
                                                    .any(|w| message.contains(w)),
                                                "#[db_retry({written})]: the builder says \
                                                 {policy_error:?}, the attribute says {message:?}"
                                            );
                                        }
                                        (attribute, builder) => panic!(
                                            "#[db_retry({written})]: the attribute says {:?}, the builder says {:?}",
                                            attribute.map(|_| "valid").map_err(|e| e.to_string()),
                                            builder.map(|_| "valid")
                                        ),
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // Both outcomes were exercised, many times each.
    assert!(
        accepted > 5000 && rejected > 5000,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn the_defaults_are_the_same() {
    let (args, error) = parse::parse_args(quote!());
    assert!(error.is_none());
    let config = validate::validate(args).expect("defaults are valid");
    assert_eq!(emitted(&config), RetryPolicy::default());
}
