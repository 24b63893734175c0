//! Rewrites the bodies of the annotated impl: routed tokio paths go to
//! `horizon_plugin_sdk::rt`, refused ones become errors.
//!
//! Like async-trait's `VisitMut`s: every span is kept (the replacement path
//! carries the span of the `tokio` it replaces, so type errors still land on
//! the user's code), nested items are not entered (they are not part of the
//! plugin's async bodies; code in them is covered at run time by the plugin's
//! private runtime), and macro token streams are walked by hand so that
//! `tokio::select!` and `format!` arguments are rewritten too.

mod tokens;
mod uses;

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Block, Expr, ImplItemFn, Item, ItemImpl, Macro, Path, PathSegment, Stmt};

use crate::crate_name;
use crate::paths::{self, Aliases, Class};

/// Rewrites the bodies of `item` in place and appends every error it finds
/// to `errors`.
pub(crate) fn rewrite(item: &mut ItemImpl, errors: &mut Vec<syn::Error>) {
    let mut rewriter = Rewriter {
        aliases: uses::collect_aliases(item),
        errors: Vec::new(),
    };
    rewriter.visit_item_impl_mut(item);
    errors.append(&mut rewriter.errors);
}

/// Rewrites one impl's bodies and collects every error it finds.
struct Rewriter {
    /// The aliases of the bodies' `use` items, collected before the walk.
    aliases: Aliases,
    errors: Vec<syn::Error>,
}

fn routed_root(span: Span) -> impl Iterator<Item = PathSegment> {
    [crate_name::sdk(span), Ident::new("rt", span)]
        .into_iter()
        .map(PathSegment::from)
}

impl Rewriter {
    /// Routes or refuses one path, or leaves it alone.
    fn route_path(&mut self, path: &mut Path) {
        let Some(first) = path.segments.first() else {
            return;
        };
        let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let full = if names[0] == "tokio" || names[0] == "futures" {
            names
        } else if path.leading_colon.is_none() {
            match self.aliases.get(&names[0]) {
                Some(target) => target
                    .iter()
                    .cloned()
                    .chain(names.into_iter().skip(1))
                    .collect(),
                None => return,
            }
        } else {
            return;
        };
        match paths::classify_full(&full) {
            Class::Routed if first.ident == "tokio" => {
                let span = first.ident.span();
                let rest: Vec<PathSegment> = path.segments.iter().skip(1).cloned().collect();
                path.segments = routed_root(span).chain(rest).collect();
                path.leading_colon = Some(syn::Token![::](span));
            }
            Class::Refused(msg) => self.errors.push(syn::Error::new_spanned(&*path, msg)),
            Class::Routed | Class::Keep => {}
        }
    }

    /// Refuses `#[tokio::main]` / `#[tokio::test]` on a method and removes them
    /// so the rest still expands.
    fn check_attrs(&mut self, attrs: &mut Vec<Attribute>) {
        attrs.retain(|attr| {
            let segs: Vec<String> = attr.path().segments.iter().map(|s| s.ident.to_string()).collect();
            let runtime_attr = matches!(segs.iter().map(String::as_str).collect::<Vec<_>>()[..], ["tokio", "main" | "test"]);
            if runtime_attr {
                self.errors.push(syn::Error::new_spanned(
                    attr,
                    format!(
                        "`#[tokio::{}]` starts a tokio runtime inside the plugin; plugin methods are \
                         `async fn`s that the host runs on its own runtime: remove the attribute",
                        segs[1]
                    ),
                ));
            }
            !runtime_attr
        });
    }

    /// Refuses per-thread or global storage of a runtime handle in the
    /// bodies: the host injects the handle, and a `thread_local!` would hold
    /// it only on the thread that stored it.
    fn check_handle_storage(&mut self, stmt: &Stmt) {
        let mentions_handle = |tokens: TokenStream| {
            fn walk(tokens: TokenStream) -> bool {
                tokens.into_iter().any(|tt| match tt {
                    TokenTree::Ident(id) => id == "Handle" || id == "Runtime",
                    TokenTree::Group(g) => walk(g.stream()),
                    _ => false,
                })
            }
            walk(tokens)
        };
        let offending: Option<TokenStream> = match stmt {
            Stmt::Macro(m)
                if m.mac.path.is_ident("thread_local") && mentions_handle(m.mac.tokens.clone()) =>
            {
                Some(m.mac.path.to_token_stream())
            }
            Stmt::Item(Item::Macro(m))
                if m.mac.path.is_ident("thread_local") && mentions_handle(m.mac.tokens.clone()) =>
            {
                Some(m.mac.path.to_token_stream())
            }
            Stmt::Item(Item::Static(st)) if mentions_handle(st.ty.to_token_stream()) => {
                Some(st.ty.to_token_stream())
            }
            _ => None,
        };
        if let Some(tokens) = offending {
            self.errors
                .push(syn::Error::new_spanned(tokens, paths::HANDLE_STORAGE));
        }
    }
}

impl VisitMut for Rewriter {
    fn visit_impl_item_fn_mut(&mut self, f: &mut ImplItemFn) {
        self.check_attrs(&mut f.attrs);
        visit_mut::visit_impl_item_fn_mut(self, f);
    }

    fn visit_block_mut(&mut self, block: &mut Block) {
        let stmts = std::mem::take(&mut block.stmts);
        for stmt in stmts {
            self.check_handle_storage(&stmt);
            match stmt {
                Stmt::Item(Item::Use(u)) => block.stmts.extend(
                    uses::rewrite_use(u, &mut self.errors)
                        .into_iter()
                        .map(|u| Stmt::Item(Item::Use(u))),
                ),
                other => block.stmts.push(other),
            }
        }
        visit_mut::visit_block_mut(self, block);
    }

    fn visit_item_mut(&mut self, _: &mut Item) {
        // Nested items are not part of the plugin's bodies: not entered.
    }

    fn visit_path_mut(&mut self, path: &mut Path) {
        visit_mut::visit_path_mut(self, path);
        self.route_path(path);
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        // `x.block_on(fut)` blocks the host worker that polls this code,
        // whatever `x` is (the SDK's handle, a `tokio::runtime::Handle`
        // obtained some other way, an executor). The call is replaced by one
        // of the same type that never runs, so this error is the only one.
        if let Expr::MethodCall(call) = expr
            && call.method == "block_on"
            && call.args.len() == 1
        {
            self.errors.push(syn::Error::new_spanned(
                &call.method,
                paths::METHOD_BLOCK_ON,
            ));
            let span = call.method.span();
            let (receiver, future) = (&call.receiver, &call.args[0]);
            let sdk = crate_name::sdk(span);
            *expr = syn::parse_quote_spanned!(span=>
                ::#sdk::__private::refused_block_on(&#receiver, #future)
            );
            return;
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_macro_mut(&mut self, mac: &mut Macro) {
        let segs: Vec<String> = mac
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        if segs.len() == 2 && segs[0] == "tokio" && paths::PURE_MACROS.contains(&segs[1].as_str()) {
            let span = mac.path.segments[0].ident.span();
            let name = &mac.path.segments[1];
            let sdk = crate_name::sdk(span);
            mac.path = syn::parse_quote_spanned!(span=> ::#sdk::__private::tokio::#name);
        }
        mac.tokens = tokens::rewrite_tokens(
            std::mem::take(&mut mac.tokens),
            &self.aliases,
            &mut self.errors,
        );
    }
}
