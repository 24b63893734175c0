//! `use` items in the bodies: flattened to one path per leaf, their
//! aliases recorded (so calls through them are checked wherever they
//! appear), and tokio's leaves routed or refused one by one.

use proc_macro2::{Ident, Span};
use quote::quote_spanned;
use syn::visit_mut::VisitMut;
use syn::{ImplItem, Item, ItemImpl, ItemUse, UseTree};

use crate::crate_name;
use crate::paths::{self, Aliases, Class};

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

/// The aliases of every `use` in the impl's bodies, so that calls through
/// them can be checked wherever they appear.
pub(super) fn collect_aliases(item: &mut ItemImpl) -> Aliases {
    struct Collect<'a>(&'a mut Aliases);
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
    let mut aliases = Aliases::new();
    for impl_item in &mut item.items {
        if let ImplItem::Fn(f) = impl_item {
            Collect(&mut aliases).visit_block_mut(&mut f.block);
        }
    }
    aliases
}

/// Splits a `use` into one `use` per leaf where any leaf is tokio's, and
/// rewrites or refuses each.
pub(super) fn rewrite_use(item: ItemUse, errors: &mut Vec<syn::Error>) -> Vec<ItemUse> {
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
            errors.push(syn::Error::new_spanned(&item, paths::TOKIO_GLOB));
            continue;
        }
        match paths::classify_full(&names) {
            Class::Routed => {
                let span = path[0].span();
                path.splice(0..1, [crate_name::sdk(span), Ident::new("rt", span)]);
                leading_colon = true;
            }
            Class::Refused(msg) => {
                let tokens = quote::quote!(#(#path)::*);
                errors.push(syn::Error::new_spanned(tokens, msg));
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
            Err(e) => errors.push(e),
        }
    }
    out
}
