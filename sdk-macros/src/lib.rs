//! The `#[horizon_plugin]` attribute of `horizon-sdk`. Use it through
//! `horizon_sdk::horizon_plugin`; this crate is an implementation detail.
//!
//! The pipeline: parse the impl, collect the `use` aliases of its bodies,
//! rewrite the bodies ([`rewrite`]), validate the impl ([`validate`]), and
//! expand the declaration ([`expand`]). Errors are collected, and the user's
//! item is always emitted so the rest of the crate still type-checks.

mod expand;
mod paths;
mod rewrite;
mod validate;

use proc_macro::TokenStream;
use quote::ToTokens;
use syn::visit_mut::VisitMut;

/// Turns `impl Plugin for T` into a loadable plugin.
///
/// See `horizon_sdk::horizon_plugin` for the full documentation.
#[proc_macro_attribute]
pub fn horizon_plugin(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let input2 = proc_macro2::TokenStream::from(input.clone());
    let mut item: syn::ItemImpl = match syn::parse2(input2) {
        Ok(item) => item,
        Err(e) => {
            // Keep the user's tokens so IDEs and the rest of the crate keep working.
            let mut out = proc_macro2::TokenStream::from(input);
            out.extend(
                syn::Error::new(e.span(), "`#[horizon_plugin]` goes on `impl Plugin for YourType`")
                    .to_compile_error(),
            );
            return out.into();
        }
    };
    let mut errors = Vec::new();
    if !args.is_empty() {
        errors.push(syn::Error::new_spanned(&args, "`#[horizon_plugin]` takes no arguments"));
    }
    let mut rewriter = rewrite::Rewriter::default();
    rewriter.collect_aliases(&mut item);
    rewriter.visit_item_impl_mut(&mut item);
    errors.append(&mut rewriter.errors);
    let plugin = validate::validate(&item, &mut errors);

    let mut out = item.to_token_stream();
    match plugin {
        Some(plugin) if errors.is_empty() => out.extend(expand::declaration(&plugin)),
        _ => {
            for e in errors {
                out.extend(e.to_compile_error());
            }
        }
    }
    out.into()
}
