//! The options of `#[transaction(...)]`: how each attempt's transaction begins, and whether its
//! COMMIT is verified.
//!
//! ```text
//! #[transaction(isolation = serializable, read_only, deferrable)] tx: &mut PgConnection
//! #[transaction(immediate)] tx: &mut SqliteConnection
//! #[transaction(verify_commit)] tx: &mut PgConnection
//! ```
//!
//! Which connection types support which option is checked by the runtime's traits, at the
//! option's span; this module checks the grammar and the combinations.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, Token};

const OPTIONS: &str = "`isolation = serializable | repeatable_read | read_committed`, \
                       `read_only`, `deferrable`, `immediate`, `verify_commit`";

/// The isolation levels, as the attribute spells them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Isolation {
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

/// The options of one `#[transaction(...)]`; each present option keeps its span, where an
/// error about it (a connection type without it) points.
#[derive(Default, Clone)]
pub(crate) struct TransactionArgs {
    pub isolation: Option<(Isolation, Span)>,
    pub read_only: Option<Span>,
    pub deferrable: Option<Span>,
    pub immediate: Option<Span>,
    pub verify_commit: Option<Span>,
}

impl TransactionArgs {
    /// Whether the transaction begins other than with a plain `BEGIN`.
    pub(crate) fn begins_with_options(&self) -> bool {
        self.isolation.is_some()
            || self.read_only.is_some()
            || self.deferrable.is_some()
            || self.immediate.is_some()
    }
}

/// One `name` or `name = value`.
struct OptionArg {
    name: Ident,
    value: Option<Ident>,
}

impl Parse for OptionArg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name: Ident = input.call(syn::ext::IdentExt::parse_any)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.call(syn::ext::IdentExt::parse_any)?)
        } else {
            None
        };
        Ok(OptionArg { name, value })
    }
}

/// The options of `attr`, a `#[transaction]` or `#[transaction(...)]`.
pub(crate) fn parse(attr: &Attribute) -> syn::Result<TransactionArgs> {
    let mut args = TransactionArgs::default();
    let list = match &attr.meta {
        syn::Meta::Path(_) => return Ok(args),
        syn::Meta::List(list) => list,
        syn::Meta::NameValue(name_value) => {
            return Err(syn::Error::new_spanned(
                name_value,
                format!("write the options in parentheses, `#[transaction(...)]`: {OPTIONS}"),
            ))
        }
    };
    let options = list.parse_args_with(Punctuated::<OptionArg, Token![,]>::parse_terminated)?;
    for option in options {
        let span = option.name.span();
        let name = option.name.to_string();
        let slot = match name.as_str() {
            "isolation" => None,
            "read_only" => Some(&mut args.read_only),
            "deferrable" => Some(&mut args.deferrable),
            "immediate" => Some(&mut args.immediate),
            "verify_commit" => Some(&mut args.verify_commit),
            _ => {
                return Err(syn::Error::new(
                    span,
                    format!("unknown `#[transaction]` option `{name}`; the options are {OPTIONS}"),
                ))
            }
        };
        let duplicate = match &slot {
            Some(slot) => slot.is_some(),
            None => args.isolation.is_some(),
        };
        if duplicate {
            return Err(syn::Error::new(span, format!("`{name}` is given twice")));
        }
        match (slot, option.value) {
            (Some(slot), None) => *slot = Some(span),
            (Some(_), Some(value)) => {
                return Err(syn::Error::new(
                    value.span(),
                    format!("`{name}` takes no value: write `{name}` on its own"),
                ))
            }
            (None, None) => {
                return Err(syn::Error::new(
                    span,
                    "`isolation` needs a level: `isolation = serializable`, `repeatable_read` or \
                     `read_committed`",
                ))
            }
            (None, Some(value)) => {
                let level = match value.to_string().as_str() {
                    "serializable" => Isolation::Serializable,
                    "repeatable_read" => Isolation::RepeatableRead,
                    "read_committed" => Isolation::ReadCommitted,
                    other => {
                        return Err(syn::Error::new(
                            value.span(),
                            format!(
                                "unknown isolation level `{other}`; write `serializable`, \
                                 `repeatable_read` or `read_committed`"
                            ),
                        ))
                    }
                };
                args.isolation = Some((level, value.span()));
            }
        }
    }
    check_combination(&args)?;
    Ok(args)
}

/// Options that cannot go together.
fn check_combination(args: &TransactionArgs) -> syn::Result<()> {
    // `BEGIN IMMEDIATE` is SQLite's, whose transactions have no level and cannot be read-only.
    if let Some(immediate) = args.immediate {
        let other = [
            (args.isolation.map(|(_, span)| span), "isolation"),
            (args.read_only, "read_only"),
            (args.deferrable, "deferrable"),
        ]
        .into_iter()
        .find_map(|(span, name)| span.map(|_| name));
        if let Some(other) = other {
            return Err(syn::Error::new(
                immediate,
                format!(
                    "`immediate` is SQLite's `BEGIN IMMEDIATE` and cannot go with `{other}`, which \
                     SQLite does not have"
                ),
            ));
        }
    }
    // PostgreSQL ignores DEFERRABLE anywhere else; asking for it there is a mistake.
    if let Some(deferrable) = args.deferrable {
        let serializable = matches!(args.isolation, Some((Isolation::Serializable, _)));
        if !serializable || args.read_only.is_none() {
            return Err(syn::Error::new(
                deferrable,
                "`deferrable` only takes effect on a serializable read-only transaction: write \
                 `isolation = serializable, read_only, deferrable`",
            ));
        }
    }
    Ok(())
}
