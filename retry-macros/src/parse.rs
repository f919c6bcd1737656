//! The attribute's grammar: `key = value` pairs, each parsed and checked on its own so that one
//! bad key gives exactly one error.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Expr, ExprLit, Ident, Lit, Path, Token};

/// Every key the attribute accepts, in the order the docs list them.
pub(crate) const KEYS: &[&str] = &[
    "max",
    "on",
    "backoff",
    "base",
    "cap",
    "jitter",
    "deadline",
    "attempt_timeout",
    "idempotent",
    "budget",
    "breaker",
    "fail_fast",
    "crate",
];

/// A value together with the span of the tokens it was written as.
#[derive(Clone)]
pub(crate) struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

#[derive(Clone)]
pub(crate) enum RetryOnArg {
    Transient,
    Connection,
    Contention,
    /// A user function `fn(&E) -> bool` or `fn(&E) -> ErrorClass`.
    Classifier(Path),
}

/// Which retry budget the function draws on.
#[derive(Clone)]
pub(crate) enum BudgetArg {
    /// `budget = none`.
    Unlimited,
    /// `budget = path::to::STATIC`.
    Named(Path),
}

pub(crate) use db_retry_policy::{Backoff, Jitter};

/// The attribute's arguments as written; `None` means the key was not given.
#[derive(Clone, Default)]
pub(crate) struct Args {
    pub max: Option<Spanned<u32>>,
    pub on: Option<Spanned<RetryOnArg>>,
    pub backoff: Option<Spanned<Backoff>>,
    pub base: Option<Spanned<Duration>>,
    pub cap: Option<Spanned<Duration>>,
    pub jitter: Option<Spanned<Jitter>>,
    pub deadline: Option<Spanned<Duration>>,
    pub attempt_timeout: Option<Spanned<Duration>>,
    pub idempotent: Option<Spanned<bool>>,
    pub budget: Option<Spanned<BudgetArg>>,
    pub breaker: Option<Spanned<Path>>,
    pub fail_fast: Option<Spanned<bool>>,
    pub crate_path: Option<Path>,
}

struct Pair {
    key: Ident,
    value: Expr,
}

fn parse_pair(input: ParseStream) -> syn::Result<Pair> {
    let key = Ident::parse_any(input)?;
    if !input.peek(Token![=]) {
        return Err(syn::Error::new(
            key.span(),
            format!("expected `{key} = <value>`: every db_retry argument is a `key = value` pair"),
        ));
    }
    input.parse::<Token![=]>()?;
    let value = input.parse::<Expr>()?;
    Ok(Pair { key, value })
}

/// Parse the attribute's tokens. Syntax errors stop at the first; a bad value for one key does
/// not hide the others. The keys that did parse come back with the errors, so the function can
/// still be rewritten next to them.
pub(crate) fn parse_args(tokens: TokenStream) -> (Args, Option<syn::Error>) {
    let parser = |input: ParseStream| {
        Punctuated::<Pair, Token![,]>::parse_terminated_with(input, parse_pair)
    };
    let pairs = match parser.parse2(tokens) {
        Ok(pairs) => pairs,
        Err(error) => return (Args::default(), Some(error)),
    };
    let mut args = Args::default();
    let mut errors: Option<syn::Error> = None;
    for pair in pairs {
        if let Err(error) = args.set(pair) {
            match &mut errors {
                Some(errors) => errors.combine(error),
                None => errors = Some(error),
            }
        }
    }
    (args, errors)
}

impl Args {
    fn set(&mut self, Pair { key, value }: Pair) -> syn::Result<()> {
        let name = key.to_string();
        let span = value.span();
        macro_rules! once {
            ($field:expr, $parsed:expr) => {{
                if $field.is_some() {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("`{name}` is set more than once; keep one"),
                    ));
                }
                $field = Some(Spanned {
                    value: $parsed?,
                    span,
                });
            }};
        }
        match name.as_str() {
            "max" => once!(self.max, parse_max(&value)),
            "on" => once!(self.on, parse_on(&value)),
            "backoff" => once!(self.backoff, parse_backoff(&value)),
            "base" => once!(self.base, parse_duration("base", &value)),
            "cap" => once!(self.cap, parse_duration("cap", &value)),
            "jitter" => once!(self.jitter, parse_jitter(&value)),
            "deadline" => once!(self.deadline, parse_duration("deadline", &value)),
            "attempt_timeout" => once!(
                self.attempt_timeout,
                parse_duration("attempt_timeout", &value)
            ),
            "idempotent" => once!(self.idempotent, parse_bool("idempotent", &value)),
            "budget" => once!(self.budget, parse_budget(&value)),
            "breaker" => once!(self.breaker, parse_breaker(&value)),
            "fail_fast" => once!(self.fail_fast, parse_bool("fail_fast", &value)),
            "crate" => {
                if self.crate_path.is_some() {
                    return Err(syn::Error::new(
                        key.span(),
                        "`crate` is set more than once; keep one",
                    ));
                }
                self.crate_path = Some(parse_path("crate", &value)?);
            }
            _ => return Err(unknown_key(&key)),
        }
        Ok(())
    }
}

fn unknown_key(key: &Ident) -> syn::Error {
    let name = key.to_string();
    let expected = KEYS.join(", ");
    let message = match closest(&name, KEYS) {
        Some(close) => format!(
            "unknown db_retry argument `{name}`; did you mean `{close}`? expected one of: {expected}"
        ),
        None => format!("unknown db_retry argument `{name}`; expected one of: {expected}"),
    };
    syn::Error::new(key.span(), message)
}

/// The candidate within edit distance 2 of `word`, if any.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn literal(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

fn word(value: &Expr) -> Option<&Ident> {
    match value {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => path.path.get_ident(),
        Expr::Group(group) => word(&group.expr),
        _ => None,
    }
}

/// What `max` takes; its range is checked with the rest of the schedule, in `validate`.
pub(crate) fn max_wanted() -> String {
    format!(
        "`max` takes the number of retries after the first attempt, 0 to {}",
        db_retry_policy::MAX_RETRIES_LIMIT
    )
}

fn parse_max(value: &Expr) -> syn::Result<u32> {
    let want = max_wanted();
    let Some(Lit::Int(int)) = literal(value) else {
        return Err(syn::Error::new_spanned(value, want));
    };
    if !int.suffix().is_empty() {
        return Err(syn::Error::new_spanned(
            int,
            format!("`max` is a plain count, without a suffix; {want}"),
        ));
    }
    int.base10_parse::<u32>().map_err(|_| {
        syn::Error::new_spanned(
            int,
            format!("`max = {}` is out of range; {want}", int.base10_digits()),
        )
    })
}

fn parse_on(value: &Expr) -> syn::Result<RetryOnArg> {
    if let Some(ident) = word(value) {
        match ident.to_string().as_str() {
            "transient" => return Ok(RetryOnArg::Transient),
            "connection" => return Ok(RetryOnArg::Connection),
            "contention" => return Ok(RetryOnArg::Contention),
            _ => {}
        }
    }
    match value {
        Expr::Path(path) if path.qself.is_none() => Ok(RetryOnArg::Classifier(path.path.clone())),
        _ => Err(syn::Error::new_spanned(
            value,
            "`on` takes `transient`, `connection`, `contention`, or the path of a classifier \
             function `fn(&E) -> bool` or `fn(&E) -> db_retry::ErrorClass`",
        )),
    }
}

fn parse_budget(value: &Expr) -> syn::Result<BudgetArg> {
    if word(value).is_some_and(|ident| ident == "none") {
        return Ok(BudgetArg::Unlimited);
    }
    match value {
        Expr::Path(path) if path.qself.is_none() => Ok(BudgetArg::Named(path.path.clone())),
        _ => Err(syn::Error::new_spanned(
            value,
            "`budget` takes `none`, or the path of a `static` `db_retry::RetryBudget` \
             (e.g. `budget = crate::budgets::ORDERS`)",
        )),
    }
}

fn parse_breaker(value: &Expr) -> syn::Result<Path> {
    match value {
        Expr::Path(path) if path.qself.is_none() => Ok(path.path.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            "`breaker` takes the path of a `static` `db_retry::CircuitBreaker` \
             (e.g. `breaker = crate::db::PRIMARY`)",
        )),
    }
}

fn parse_backoff(value: &Expr) -> syn::Result<Backoff> {
    let kind = word(value).and_then(|ident| match ident.to_string().as_str() {
        "exponential" => Some(Backoff::Exponential),
        "fixed" => Some(Backoff::Fixed),
        "none" => Some(Backoff::None),
        _ => None,
    });
    kind.ok_or_else(|| {
        syn::Error::new_spanned(
            value,
            "unknown `backoff`; expected one of: exponential, fixed, none",
        )
    })
}

fn parse_jitter(value: &Expr) -> syn::Result<Jitter> {
    let kind = word(value).and_then(|ident| match ident.to_string().as_str() {
        "full" => Some(Jitter::Full),
        "equal" => Some(Jitter::Equal),
        "decorrelated" => Some(Jitter::Decorrelated),
        "none" => Some(Jitter::None),
        _ => None,
    });
    kind.ok_or_else(|| {
        syn::Error::new_spanned(
            value,
            "unknown `jitter`; expected one of: full, equal, decorrelated, none",
        )
    })
}

fn parse_bool(key: &str, value: &Expr) -> syn::Result<bool> {
    match literal(value) {
        Some(Lit::Bool(b)) => Ok(b.value),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` takes `true` or `false`"),
        )),
    }
}

fn parse_path(key: &str, value: &Expr) -> syn::Result<Path> {
    match value {
        Expr::Path(path) if path.qself.is_none() => Ok(path.path.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` takes a path, such as `db_retry` or `my_crate::db_retry`"),
        )),
    }
}

/// `100ms`, `5s`, `1m`: an integer literal whose suffix is the unit.
fn parse_duration(key: &str, value: &Expr) -> syn::Result<Duration> {
    let want =
        format!("`{key}` takes an integer with a unit: `ms`, `s` or `m` (e.g. `{key} = 250ms`)");
    let Some(Lit::Int(int)) = literal(value) else {
        return Err(syn::Error::new_spanned(value, want));
    };
    let amount: u64 = int
        .base10_parse()
        .map_err(|_| syn::Error::new_spanned(int, format!("`{key}` is too large")))?;
    let duration = match int.suffix() {
        "ms" => Some(Duration::from_millis(amount)),
        "s" => Some(Duration::from_secs(amount)),
        "m" => amount.checked_mul(60).map(Duration::from_secs),
        "" => {
            return Err(syn::Error::new_spanned(
                int,
                format!(
                "`{key} = {amount}` needs a unit: write `{amount}ms`, `{amount}s` or `{amount}m`"
            ),
            ))
        }
        other => {
            return Err(syn::Error::new_spanned(
                int,
                format!("unknown unit `{other}` in `{key}`; expected `ms`, `s` or `m`"),
            ))
        }
    };
    // The policy is emitted in milliseconds; anything past u64 milliseconds is no schedule.
    duration
        .filter(|d| u64::try_from(d.as_millis()).is_ok())
        .ok_or_else(|| syn::Error::new_spanned(int, format!("`{key}` is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys() {
        assert_eq!(closest("mx", KEYS), Some("max"));
        assert_eq!(closest("jiter", KEYS), Some("jitter"));
        assert_eq!(closest("retries", KEYS), None);
    }
}
