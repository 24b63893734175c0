//! Tokio paths and `.block_on` written inside a macro's tokens
//! (`tokio::select!`, `format!` and the like), walked by hand.

use proc_macro2::{Group, Spacing, TokenStream, TokenTree};
use quote::quote_spanned;

use crate::crate_name;
use crate::paths::{self, Aliases, Class};

/// Rewrites tokio paths written inside a macro's tokens, resolving the
/// names in `aliases` as paths outside macros are, and appends every
/// refusal to `errors`.
pub(super) fn rewrite_tokens(
    tokens: TokenStream,
    aliases: &Aliases,
    errors: &mut Vec<syn::Error>,
) -> TokenStream {
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
        if let (TokenTree::Punct(dot), Some(TokenTree::Ident(method)), Some(TokenTree::Group(args))) =
            (&tts[i], tts.get(i + 1), tts.get(i + 2))
            && dot.as_char() == '.'
            && method == "block_on"
            && args.delimiter() == proc_macro2::Delimiter::Parenthesis
        {
            errors.push(syn::Error::new(method.span(), paths::METHOD_BLOCK_ON));
        }
        if let TokenTree::Group(g) = &tts[i] {
            let mut ng = Group::new(g.delimiter(), rewrite_tokens(g.stream(), aliases, errors));
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
            || (start >= 1 && matches!(&tts[start - 1], TokenTree::Punct(p) if p.as_char() == '.'));
        let alias = match tts.get(root) {
            Some(TokenTree::Ident(id)) if start == root => aliases.get(&id.to_string()),
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
        match paths::classify_full(&full) {
            Class::Routed if root_ident == "tokio" && !is_macro => {
                let sdk = crate_name::sdk(span);
                out.extend(quote_spanned!(span=> ::#sdk::rt));
                out.extend(tts[root + 1..j].iter().cloned());
            }
            Class::Refused(msg) => {
                let offending: TokenStream = tts[start..j].iter().cloned().collect();
                errors.push(syn::Error::new_spanned(offending, msg));
                out.extend(tts[start..j].iter().cloned());
            }
            _ => out.extend(tts[start..j].iter().cloned()),
        }
        i = j;
    }
    out.into_iter().collect()
}
