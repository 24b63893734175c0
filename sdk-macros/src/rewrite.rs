//! Rewrites the bodies of the annotated impl: routed tokio paths go to
//! `horizon_plugin_sdk::rt`, refused ones become errors.
//!
//! Like async-trait's `VisitMut`s: every span is kept (the replacement path
//! carries the span of the `tokio` it replaces, so type errors still land on
//! the user's code), nested items are not entered (they are not part of the
//! plugin's async bodies; code in them is covered at run time by the plugin's
//! private runtime), and macro token streams are walked by hand so that
//! `tokio::select!` and `format!` arguments are rewritten too.

use std::collections::HashMap;

use proc_macro2::{Group, Ident, Spacing, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote_spanned};
use syn::visit_mut::{self, VisitMut};
use syn::{
    Attribute, Block, Expr, ImplItemFn, Item, ItemUse, Macro, Path, PathSegment, Stmt, UseTree,
};

use crate::crate_name;
use crate::paths::{self, Class};

/// Rewrites one impl's bodies and collects every error it finds.
#[derive(Default)]
pub(crate) struct Rewriter {
    /// Names brought in by a `use tokio::…` / `use futures::…` in the bodies,
    /// mapped to the full path they stand for. Only consulted to refuse
    /// calls through such names (in paths and in macro arguments alike);
    /// routed `use`s are rewritten in place.
    aliases: HashMap<String, Vec<String>>,
    pub(crate) errors: Vec<syn::Error>,
}

/// The classification of a full path (root crate included).
fn classify_full(full: &[String]) -> Class {
    match full.first().map(String::as_str) {
        Some("tokio") => paths::classify(&full[1..]),
        Some("futures")
            if full[1..]
                .iter()
                .map(String::as_str)
                .eq(["executor", "block_on"]) =>
        {
            Class::Refused(paths::BLOCK_ON)
        }
        _ => Class::Keep,
    }
}

fn routed_root(span: Span) -> impl Iterator<Item = PathSegment> {
    [crate_name::sdk(span), Ident::new("rt", span)]
        .into_iter()
        .map(PathSegment::from)
}

/// One leaf of a `use` tree: its full path and how it ends.
struct UseLeaf {
    path: Vec<Ident>,
    end: UseEnd,
}

enum UseEnd {
    /// `a::b` or `a::b as c`
    Name(Option<Ident>),
    /// `a::*`
    Glob(Span),
}

fn flatten(tree: &UseTree, prefix: &mut Vec<Ident>, out: &mut Vec<UseLeaf>) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.clone());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) if n.ident == "self" => out.push(UseLeaf {
            path: prefix.clone(),
            end: UseEnd::Name(None),
        }),
        UseTree::Name(n) => {
            let mut path = prefix.clone();
            path.push(n.ident.clone());
            out.push(UseLeaf {
                path,
                end: UseEnd::Name(None),
            });
        }
        UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.clone());
            out.push(UseLeaf {
                path,
                end: UseEnd::Name(Some(r.rename.clone())),
            });
        }
        UseTree::Glob(g) => out.push(UseLeaf {
            path: prefix.clone(),
            end: UseEnd::Glob(g.star_token.span),
        }),
        UseTree::Group(g) => {
            for t in &g.items {
                flatten(t, prefix, out);
            }
        }
    }
}

impl Rewriter {
    /// Records the aliases of every `use` in the impl's bodies, so that calls
    /// through them can be checked wherever they appear.
    pub(crate) fn collect_aliases(&mut self, item: &mut syn::ItemImpl) {
        struct Collect<'a>(&'a mut HashMap<String, Vec<String>>);
        impl VisitMut for Collect<'_> {
            fn visit_item_mut(&mut self, item: &mut Item) {
                if let Item::Use(u) = item {
                    let mut leaves = Vec::new();
                    flatten(&u.tree, &mut Vec::new(), &mut leaves);
                    for leaf in leaves {
                        if let (UseEnd::Name(rename), Some(last)) = (&leaf.end, leaf.path.last()) {
                            let name = rename.as_ref().unwrap_or(last).to_string();
                            self.0
                                .insert(name, leaf.path.iter().map(Ident::to_string).collect());
                        }
                    }
                }
            }
        }
        for impl_item in &mut item.items {
            if let syn::ImplItem::Fn(f) = impl_item {
                Collect(&mut self.aliases).visit_block_mut(&mut f.block);
            }
        }
    }

    /// Splits a `use` into one `use` per leaf where any leaf is tokio's, and
    /// rewrites or refuses each.
    fn rewrite_use(&mut self, item: ItemUse) -> Vec<ItemUse> {
        let mut leaves = Vec::new();
        flatten(&item.tree, &mut Vec::new(), &mut leaves);
        if !leaves.iter().any(|l| {
            l.path
                .first()
                .is_some_and(|i| i == "tokio" || i == "futures")
        }) {
            return vec![item];
        }
        let mut out = Vec::new();
        for leaf in leaves {
            let names: Vec<String> = leaf.path.iter().map(Ident::to_string).collect();
            let mut path = leaf.path.clone();
            let mut leading_colon = item.leading_colon.is_some();
            if matches!(leaf.end, UseEnd::Glob(_)) && names == ["tokio"] {
                self.errors
                    .push(syn::Error::new_spanned(&item, paths::TOKIO_GLOB));
                continue;
            }
            match classify_full(&names) {
                Class::Routed => {
                    let span = path[0].span();
                    path.splice(0..1, [crate_name::sdk(span), Ident::new("rt", span)]);
                    leading_colon = true;
                }
                Class::Refused(msg) => {
                    let tokens = quote::quote!(#(#path)::*);
                    self.errors.push(syn::Error::new_spanned(tokens, msg));
                    continue;
                }
                Class::Keep => {}
            }
            let colon = leading_colon.then(|| quote::quote!(::));
            let attrs = &item.attrs;
            let vis = &item.vis;
            let tokens = match leaf.end {
                UseEnd::Name(Some(rename)) => {
                    quote::quote!(#(#attrs)* #vis use #colon #(#path)::* as #rename;)
                }
                UseEnd::Name(None) => quote::quote!(#(#attrs)* #vis use #colon #(#path)::*;),
                UseEnd::Glob(span) => {
                    let star = quote_spanned!(span=> *);
                    quote::quote!(#(#attrs)* #vis use #colon #(#path)::*::#star;)
                }
            };
            match syn::parse2::<ItemUse>(tokens) {
                Ok(u) => out.push(u),
                Err(e) => self.errors.push(e),
            }
        }
        out
    }

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
        match classify_full(&full) {
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

    /// Rewrites tokio paths written inside a macro's tokens.
    fn rewrite_tokens(&mut self, tokens: TokenStream) -> TokenStream {
        let tts: Vec<TokenTree> = tokens.into_iter().collect();
        let mut out: Vec<TokenTree> = Vec::with_capacity(tts.len());
        let is_colon2 = |i: usize| {
            matches!((tts.get(i), tts.get(i + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
        };
        let mut i = 0;
        while i < tts.len() {
            // `.block_on(..)` on any receiver, as `visit_expr_mut` refuses
            // it outside macros.
            if let (
                TokenTree::Punct(dot),
                Some(TokenTree::Ident(method)),
                Some(TokenTree::Group(args)),
            ) = (&tts[i], tts.get(i + 1), tts.get(i + 2))
                && dot.as_char() == '.'
                && method == "block_on"
                && args.delimiter() == proc_macro2::Delimiter::Parenthesis
            {
                self.errors
                    .push(syn::Error::new(method.span(), paths::METHOD_BLOCK_ON));
            }
            if let TokenTree::Group(g) = &tts[i] {
                let mut ng = Group::new(g.delimiter(), self.rewrite_tokens(g.stream()));
                ng.set_span(g.span());
                out.push(TokenTree::Group(ng));
                i += 1;
                continue;
            }
            // A path starts at `tokio` or `futures` (or `::tokio`), or at a
            // name a `use tokio::…` in the bodies brought in, and is not
            // preceded by `::` or `.` (a path's tail, a method or field).
            let (start, root) = if is_colon2(i) { (i, i + 2) } else { (i, i) };
            let preceded = (start >= 2 && is_colon2(start - 2))
                || (start >= 1
                    && matches!(&tts[start - 1], TokenTree::Punct(p) if p.as_char() == '.'));
            let alias = match tts.get(root) {
                Some(TokenTree::Ident(id)) if start == root => self.aliases.get(&id.to_string()),
                _ => None,
            };
            let root_is_tokio = alias.is_some()
                || matches!(tts.get(root), Some(TokenTree::Ident(id)) if id == "tokio" || id == "futures");
            if preceded || !root_is_tokio {
                out.push(tts[i].clone());
                i += 1;
                continue;
            }
            let mut names = Vec::new();
            let mut j = root + 1;
            while is_colon2(j) {
                match tts.get(j + 2) {
                    Some(TokenTree::Ident(id)) => {
                        names.push(id.to_string());
                        j += 3;
                    }
                    _ => break,
                }
            }
            let TokenTree::Ident(root_ident) = &tts[root] else {
                unreachable!()
            };
            let is_macro = matches!(tts.get(j), Some(TokenTree::Punct(p)) if p.as_char() == '!');
            let mut full = alias
                .cloned()
                .unwrap_or_else(|| vec![root_ident.to_string()]);
            full.extend(names.iter().cloned());
            let span = root_ident.span();
            if is_macro
                && root_ident == "tokio"
                && names.len() == 1
                && paths::PURE_MACROS.contains(&names[0].as_str())
            {
                let sdk = crate_name::sdk(span);
                out.extend(quote_spanned!(span=> ::#sdk::__private::tokio));
                out.extend(tts[root + 1..j].iter().cloned());
                i = j;
                continue;
            }
            match classify_full(&full) {
                Class::Routed if root_ident == "tokio" && !is_macro => {
                    let sdk = crate_name::sdk(span);
                    out.extend(quote_spanned!(span=> ::#sdk::rt));
                    out.extend(tts[root + 1..j].iter().cloned());
                }
                Class::Refused(msg) => {
                    let offending: TokenStream = tts[start..j].iter().cloned().collect();
                    self.errors.push(syn::Error::new_spanned(offending, msg));
                    out.extend(tts[start..j].iter().cloned());
                }
                _ => out.extend(tts[start..j].iter().cloned()),
            }
            i = j;
        }
        out.into_iter().collect()
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
}

impl Rewriter {
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
                    self.rewrite_use(u)
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
        mac.tokens = self.rewrite_tokens(std::mem::take(&mut mac.tokens));
    }
}
