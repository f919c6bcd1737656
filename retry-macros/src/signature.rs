//! What the rewrite needs to know about the function's signature, and the checks on it: an
//! `async fn` returning `Result`, and the `#[acquire]` / `#[transaction]` parameter helpers.

use proc_macro2::Span;
use syn::spanned::Spanned;

use crate::transaction::{self, TransactionArgs};
use syn::visit_mut::VisitMut;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemFn, Pat, PatIdent, PathArguments, ReturnType,
    Type, TypeReference,
};

/// How one parameter gets into each attempt.
pub(crate) enum Rebind {
    /// References (`&T`): the attempt uses them as they are.
    AsIs,
    /// `self`, `&self`, `&mut self`, `self: Arc<Self>`: the attempt uses it as it is (an
    /// `#[async_trait]` body, which renames it, needs to know which it is).
    Receiver(SelfKind),
    /// `&mut T`: reborrowed for each attempt, so every attempt has its own borrow.
    Reborrow { ident: Ident, cfg: Vec<Attribute> },
    /// A by-value argument written as a pattern (`Path(slug): Path<String>`): taken apart once,
    /// before the first attempt, into `pat` (without its `mut`s); each attempt clones each of
    /// `bindings`, as `mut` where the user wrote it.
    Destructure {
        pat: Pat,
        source: Ident,
        bindings: Vec<(Ident, Option<syn::Token![mut]>)>,
        cfg: Vec<Attribute>,
    },
    /// A by-value argument: cloned for each attempt into the user's pattern. `source` is the name
    /// the signature gives it; `ty_span` points the "not Clone" error at the type.
    Clone {
        pat: Pat,
        source: Ident,
        ty_span: Span,
        /// The parameter's `#[cfg]`s: a parameter that is configured away has no rebinding.
        cfg: Vec<Attribute>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelfKind {
    /// `&self`, `self: &Self`.
    Ref,
    /// `&mut self`, `self: &mut Self`.
    RefMut,
    /// `self: Pin<&mut Self>`.
    PinMut,
    /// `self`, `mut self`, `self: Arc<Self>`, `self: Box<Self>`.
    Owned,
}

/// Which connection the body runs on.
pub(crate) enum ConnectionMode {
    /// The body takes connections itself (typically from a pool argument).
    FromBody,
    /// `#[acquire] name: &mut Conn`: a fresh pool connection per attempt.
    Acquire { name: Ident, conn: Type },
    /// `#[transaction] name: &mut Conn`: a fresh connection and transaction per attempt.
    Transaction {
        name: Ident,
        conn: Type,
        options: TransactionArgs,
    },
}

pub(crate) struct RewritePlan {
    /// The function is an `#[async_trait]` method: a plain `fn` whose body is
    /// `Box::pin(async move { … })`; the retrying happens inside that async block.
    pub boxed: bool,
    pub rebinds: Vec<Rebind>,
    pub connection_mode: ConnectionMode,
    /// The return type with `impl Trait` replaced by `_`, for typing each attempt's block.
    pub ret: Type,
    /// Where errors about the function's error type point: `E` in `Result<T, E>`, or `Result`
    /// in an alias such as `sqlx::Result<T>` that doesn't spell `E` out.
    pub error_span: Span,
}

/// Remove `#[acquire]` / `#[transaction]` from the parameters, so the function can be emitted
/// unchanged next to an error without "cannot find attribute" errors piling on.
pub(crate) fn strip_helpers(func: &mut ItemFn) {
    for input in &mut func.sig.inputs {
        if let FnArg::Typed(typed) = input {
            typed.attrs.retain(|attr| param_helper(attr).is_none());
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ParamHelper {
    Acquire,
    Transaction,
}

fn param_helper(attr: &Attribute) -> Option<ParamHelper> {
    if attr.path().is_ident("acquire") {
        Some(ParamHelper::Acquire)
    } else if attr.path().is_ident("transaction") {
        Some(ParamHelper::Transaction)
    } else {
        None
    }
}

/// Check the signature and rewrite its parameters for the retry loop: helper parameters become
/// pools, pattern parameters get a name, `mut` moves from the signature to the per-attempt
/// binding.
pub(crate) fn analyze(func: &mut ItemFn, crate_path: &syn::Path) -> syn::Result<RewritePlan> {
    let boxed = check_async(func)?;
    let ret = match &boxed {
        Some(output) => result_type(output)?,
        None => match &func.sig.output {
            ReturnType::Type(_, ty) => result_type(ty)?,
            ReturnType::Default => {
                return Err(syn::Error::new(
                    func.sig.ident.span(),
                    "#[db_retry] needs a function that returns `Result<T, E>`: the error decides whether to retry",
                ))
            }
        },
    };

    let mut rebinds = Vec::new();
    let mut connection_mode = ConnectionMode::FromBody;
    let mut helper_span: Option<Span> = None;
    for (index, input) in func.sig.inputs.iter_mut().enumerate() {
        let typed = match input {
            FnArg::Receiver(receiver) => {
                // By its type: `self: &mut Self` is written without the `&` shorthand.
                let kind = match &*receiver.ty {
                    Type::Reference(reference) if reference.mutability.is_some() => {
                        SelfKind::RefMut
                    }
                    Type::Reference(_) => SelfKind::Ref,
                    ty if only_type_argument(ty, "Pin").is_some_and(
                        |inner| matches!(inner, Type::Reference(r) if r.mutability.is_some()),
                    ) =>
                    {
                        SelfKind::PinMut
                    }
                    _ => SelfKind::Owned,
                };
                // In an `#[async_trait]` body each attempt takes `self.as_mut()`.
                if kind == SelfKind::PinMut && boxed.is_some() {
                    receiver.mutability = Some(Default::default());
                }
                rebinds.push(Rebind::Receiver(kind));
                continue;
            }
            FnArg::Typed(typed) => typed,
        };

        let mut helper = None;
        let mut options = TransactionArgs::default();
        for attr in &typed.attrs {
            if let Some(kind) = param_helper(attr) {
                if helper_span.is_some() {
                    return Err(syn::Error::new_spanned(
                        attr,
                        "only one `#[acquire]` or `#[transaction]` per function: each attempt runs on one connection",
                    ));
                }
                match kind {
                    ParamHelper::Acquire if attr.meta.require_path_only().is_err() => {
                        return Err(syn::Error::new_spanned(
                            &attr.meta,
                            "`#[acquire]` takes no arguments: write `#[acquire] conn: &mut PgConnection`",
                        ));
                    }
                    ParamHelper::Acquire => {}
                    ParamHelper::Transaction => options = transaction::parse(attr)?,
                }
                helper_span = Some(attr.span());
                helper = Some(kind);
            }
        }
        typed.attrs.retain(|attr| param_helper(attr).is_none());

        if let Some(kind) = helper {
            let (name, conn) = connection_param(&typed.pat, &typed.ty, kind)?;
            // A named lifetime stays: `#[async_trait]` ties it to the boxed future's.
            let lifetime = match &*typed.ty {
                Type::Reference(reference) => reference.lifetime.clone(),
                _ => None,
            };
            let pool: Type = syn::parse_quote_spanned! {typed.ty.span()=>
                &#lifetime <#conn as #crate_path::__private::PooledConnection>::Pool
            };
            *typed.ty = pool;
            connection_mode = match kind {
                ParamHelper::Acquire => ConnectionMode::Acquire { name, conn },
                ParamHelper::Transaction => ConnectionMode::Transaction {
                    name,
                    conn,
                    options,
                },
            };
            rebinds.push(Rebind::AsIs);
            continue;
        }

        if let Some(executor) = executor_type(&typed.ty, &func.sig.generics) {
            return Err(syn::Error::new_spanned(
                executor,
                "an executor is used up by the query it runs, so #[db_retry] cannot hand this one \
                 to a second attempt: take `pool: &PgPool` (each attempt runs on a pooled \
                 connection), or `#[acquire] conn: &mut PgConnection` (each attempt gets a fresh \
                 connection)",
            ));
        }
        let rebind = match (&*typed.ty, &mut *typed.pat) {
            (
                Type::Reference(TypeReference {
                    mutability: None, ..
                }),
                _,
            ) => Rebind::AsIs,
            (
                Type::Reference(TypeReference {
                    mutability: Some(_),
                    ..
                }),
                Pat::Ident(pat),
            ) if pat.subpat.is_none() && pat.by_ref.is_none() => {
                pat.mutability = None;
                Rebind::Reborrow {
                    ident: pat.ident.clone(),
                    cfg: cfg_attrs(&typed.attrs),
                }
            }
            (_, Pat::Ident(pat)) if pat.subpat.is_none() && pat.by_ref.is_none() => {
                let user_pat = Pat::Ident(pat.clone());
                pat.mutability = None;
                Rebind::Clone {
                    pat: user_pat,
                    source: pat.ident.clone(),
                    ty_span: typed.ty.span(),
                    cfg: cfg_attrs(&typed.attrs),
                }
            }
            (_, pat) => {
                let source = Ident::new(&format!("__db_retry_arg{index}"), Span::mixed_site());
                let user_pat = std::mem::replace(
                    pat,
                    Pat::Ident(PatIdent {
                        attrs: Vec::new(),
                        by_ref: None,
                        mutability: None,
                        ident: source.clone(),
                        subpat: None,
                    }),
                );
                // `Path(slug): Path<String>`: the wrapper is taken apart once and each attempt
                // clones only what the pattern binds, so the wrapper never needs `Clone`.
                let mut bindings = Vec::new();
                if collect_bindings(&user_pat, &mut bindings) {
                    let mut once = user_pat;
                    strip_binding_mut(&mut once);
                    Rebind::Destructure {
                        pat: once,
                        source,
                        bindings,
                        cfg: cfg_attrs(&typed.attrs),
                    }
                } else {
                    Rebind::Clone {
                        pat: user_pat,
                        source,
                        ty_span: typed.ty.span(),
                        cfg: cfg_attrs(&typed.attrs),
                    }
                }
            }
        };
        rebinds.push(rebind);
    }
    // A connection type spelled with generics (`&mut DB::Connection`, of the function or of the
    // impl around it) can only be checked where the function is called; say so in its bounds,
    // as a hand-written version would.
    if let ConnectionMode::Acquire { conn, .. } | ConnectionMode::Transaction { conn, .. } =
        &connection_mode
    {
        let generic = func.sig.generics.type_params().next().is_some()
            || func.sig.generics.const_params().next().is_some();
        if generic || is_projection(conn) {
            let bounds = &mut func.sig.generics.make_where_clause().predicates;
            bounds.push(syn::parse_quote!(#conn: #crate_path::__private::PooledConnection));
            if let Some(error) = error_type(&ret) {
                bounds.push(syn::parse_quote!(
                    #error: ::core::convert::From<<#conn as #crate_path::__private::PooledConnection>::Error>
                ));
            }
        }
    }
    let error_span = error_span(&ret);
    Ok(RewritePlan {
        boxed: boxed.is_some(),
        rebinds,
        connection_mode,
        ret,
        error_span,
    })
}

/// `Ok(None)` for an `async fn`; `Ok(Some(output))` for the shape `#[async_trait]` leaves behind,
/// with the boxed future's `Output`.
fn check_async(func: &ItemFn) -> syn::Result<Option<Type>> {
    if func.sig.asyncness.is_some() {
        return Ok(None);
    }
    if let Some(output) = boxed_future_output(&func.sig.output) {
        return Ok(Some(output.clone()));
    }
    Err(syn::Error::new(
        func.sig.fn_token.span,
        "#[db_retry] applies to `async fn` only: each retry awaits a backoff delay; write `async fn`",
    ))
}

/// `R` of `Pin<Box<dyn Future<Output = R> + …>>`, the return type `#[async_trait]` gives.
fn boxed_future_output(output: &ReturnType) -> Option<&Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let pinned = only_type_argument(ty, "Pin")?;
    let Type::TraitObject(object) = only_type_argument(pinned, "Box")? else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let syn::TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let future = bound.path.segments.last()?;
        let PathArguments::AngleBracketed(args) = &future.arguments else {
            return None;
        };
        if future.ident != "Future" {
            return None;
        }
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// The names a pattern binds by value, with their `mut`; `false` when it binds by `ref` or with
/// `@`, which cloning its bindings could not reproduce.
fn collect_bindings(pat: &Pat, out: &mut Vec<(Ident, Option<syn::Token![mut]>)>) -> bool {
    match pat {
        Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => {
            out.push((ident.ident.clone(), ident.mutability));
            true
        }
        Pat::Tuple(tuple) => tuple.elems.iter().all(|pat| collect_bindings(pat, out)),
        Pat::TupleStruct(tuple) => tuple.elems.iter().all(|pat| collect_bindings(pat, out)),
        Pat::Struct(fields) => fields
            .fields
            .iter()
            .all(|field| collect_bindings(&field.pat, out)),
        Pat::Paren(paren) => collect_bindings(&paren.pat, out),
        Pat::Wild(_) | Pat::Rest(_) => true,
        _ => false,
    }
}

/// The pattern that takes the argument apart once: its bindings are immutable there, since only
/// the per-attempt copies are ever changed.
fn strip_binding_mut(pat: &mut Pat) {
    struct StripMut;
    impl VisitMut for StripMut {
        fn visit_pat_ident_mut(&mut self, pat: &mut PatIdent) {
            pat.mutability = None;
            syn::visit_mut::visit_pat_ident_mut(self, pat);
        }
    }
    StripMut.visit_pat_mut(pat);
}

/// The type of a by-value parameter that is a database executor (`impl Executor<…>`, or a type
/// parameter bounded by `Executor`), which each query consumes.
fn executor_type<'t>(ty: &'t Type, generics: &syn::Generics) -> Option<&'t Type> {
    // sqlx's `Executor<'c>` and its aliases `PgExecutor<'c>`, `MySqlExecutor<'c>`, … all take a
    // lifetime first; a `Copy` or `Clone` executor (such as `&Pool`) can be re-used.
    let is_executor_bound = |bound: &syn::TypeParamBound| {
        matches!(bound, syn::TypeParamBound::Trait(bound)
        if bound.path.segments.last().is_some_and(|last| {
            last.ident.to_string().ends_with("Executor")
                && matches!(&last.arguments, PathArguments::AngleBracketed(args)
                    if matches!(args.args.first(), Some(GenericArgument::Lifetime(_))))
        }))
    };
    let is_reusable_bound = |bound: &syn::TypeParamBound| {
        matches!(bound, syn::TypeParamBound::Trait(bound)
            if bound.path.segments.last().is_some_and(|last| last.ident == "Copy" || last.ident == "Clone"))
    };
    let consumed = |bounds: Vec<&syn::TypeParamBound>| {
        bounds.iter().any(|bound| is_executor_bound(bound))
            && !bounds.iter().any(|bound| is_reusable_bound(bound))
    };
    match ty {
        Type::ImplTrait(imp) if consumed(imp.bounds.iter().collect()) => Some(ty),
        Type::Path(path) if path.qself.is_none() => {
            let name = path.path.get_ident()?;
            // Every bound on the parameter, inline and in the `where` clause.
            let mut bounds: Vec<&syn::TypeParamBound> = generics
                .type_params()
                .filter(|param| param.ident == *name)
                .flat_map(|param| param.bounds.iter())
                .collect();
            if let Some(clause) = &generics.where_clause {
                for predicate in &clause.predicates {
                    if let syn::WherePredicate::Type(predicate) = predicate {
                        if matches!(&predicate.bounded_ty, Type::Path(bounded) if bounded.path.is_ident(name))
                        {
                            bounds.extend(predicate.bounds.iter());
                        }
                    }
                }
            }
            consumed(bounds).then_some(ty)
        }
        _ => None,
    }
}

/// `#[cfg(…)]` and `#[cfg_attr(…)]` of a parameter, for the statements that rebind it.
fn cfg_attrs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr"))
        .cloned()
        .collect()
}

/// `T` of `Name<T>`.
fn only_type_argument<'t>(ty: &'t Type, name: &str) -> Option<&'t Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    }
}

/// The return type, which must be `Result<_, _>` (or any alias named `Result`), with
/// `impl Trait` erased to `_`.
fn result_type(ty: &Type) -> syn::Result<Type> {
    let is_result = match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last().is_some_and(|last| {
            last.ident == "Result"
                && match &last.arguments {
                    PathArguments::AngleBracketed(args) => args.args.iter().all(|arg| {
                        matches!(arg, GenericArgument::Type(_) | GenericArgument::Lifetime(_))
                    }),
                    _ => false,
                }
        }),
        _ => false,
    };
    if !is_result {
        return Err(syn::Error::new_spanned(
            ty,
            "#[db_retry] needs a function that returns `Result<T, E>` (or an alias named `Result`): the error decides whether to retry",
        ));
    }
    let mut ret = ty.clone();
    EraseImplTrait.visit_type_mut(&mut ret);
    Ok(ret)
}

/// Whether `ty` names an associated type, as `DB::Connection` or `<DB as Database>::Connection`
/// do, rather than a connection type of its own such as `PgConnection`.
fn is_projection(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => {
            path.qself.is_some()
                || (path.path.segments.len() > 1
                    && path
                        .path
                        .segments
                        .last()
                        .is_some_and(|last| last.ident == "Connection"))
        }
        _ => false,
    }
}

/// `E` of a `Result<T, E>` written out; `None` for an alias that hides it.
fn error_type(ret: &Type) -> Option<&Type> {
    let Type::Path(path) = ret else {
        return None;
    };
    let PathArguments::AngleBracketed(args) = &path.path.segments.last()?.arguments else {
        return None;
    };
    args.args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .nth(1)
}

/// `E` in `Result<T, E>`; `Result` itself when the alias leaves `E` out.
fn error_span(ret: &Type) -> Span {
    let Type::Path(path) = ret else {
        return ret.span();
    };
    let Some(last) = path.path.segments.last() else {
        return ret.span();
    };
    let error = match &last.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter(|arg| matches!(arg, GenericArgument::Type(_)))
            .nth(1),
        _ => None,
    };
    error.map_or_else(|| last.ident.span(), Spanned::span)
}

struct EraseImplTrait;

impl VisitMut for EraseImplTrait {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(imp) = ty {
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: syn::Token![_](imp.impl_token.span),
            });
            return;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

/// `name: &mut Conn` for a helper parameter.
fn connection_param(pat: &Pat, ty: &Type, helper: ParamHelper) -> syn::Result<(Ident, Type)> {
    let which = match helper {
        ParamHelper::Acquire => "#[acquire]",
        ParamHelper::Transaction => "#[transaction]",
    };
    let conn = match ty {
        Type::Reference(TypeReference {
            mutability: Some(_),
            elem,
            ..
        }) => (**elem).clone(),
        _ => {
            return Err(syn::Error::new_spanned(
                ty,
                format!(
                    "{which} goes on a `&mut` sqlx connection parameter, such as `conn: &mut PgConnection`; callers then pass a pool"
                ),
            ))
        }
    };
    match pat {
        Pat::Ident(PatIdent {
            ident,
            subpat: None,
            by_ref: None,
            ..
        }) => Ok((ident.clone(), conn)),
        _ => Err(syn::Error::new_spanned(
            pat,
            format!("{which} needs a plain parameter name, such as `conn`"),
        )),
    }
}
