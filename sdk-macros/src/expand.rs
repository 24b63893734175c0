//! Runs the pipeline and emits the plugin's exported declaration.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::visit_mut::VisitMut;

use crate::rewrite::Rewriter;
use crate::validate::{self, PluginImpl};

/// The whole attribute, on `proc_macro2` tokens so it can be unit-tested.
pub(crate) fn horizon_plugin(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut item: syn::ItemImpl = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => {
            // Keep the user's tokens so IDEs and the rest of the crate keep working.
            let mut out = input;
            out.extend(
                syn::Error::new(
                    e.span(),
                    "`#[horizon_plugin]` goes on `impl Plugin for YourType`",
                )
                .to_compile_error(),
            );
            return out;
        }
    };
    let mut errors = Vec::new();
    if !args.is_empty() {
        errors.push(syn::Error::new_spanned(
            &args,
            "`#[horizon_plugin]` takes no arguments",
        ));
    }
    let mut rewriter = Rewriter::default();
    rewriter.collect_aliases(&mut item);
    rewriter.visit_item_impl_mut(&mut item);
    errors.append(&mut rewriter.errors);
    let plugin = validate::validate(&item, &mut errors);

    let mut out = item.to_token_stream();
    match plugin {
        Some(plugin) if errors.is_empty() => out.extend(declaration(&plugin)),
        _ => {
            for e in errors {
                out.extend(e.to_compile_error());
            }
        }
    }
    out
}

/// The exported declaration symbol, named by absolute paths only.
///
/// The symbol name is fixed (`HORIZON_PLUGIN_DECLARATION`, the name the host
/// looks up), so a second `#[horizon_plugin]` in one crate is a duplicate
/// symbol error.
fn declaration(plugin: &PluginImpl<'_>) -> TokenStream {
    let self_ty = plugin.self_ty;
    quote! {
        const _: () = {
            // The host reads this symbol with `dlsym`; its layout is
            // `horizon_sdk::abi::PluginDeclaration`.
            #[unsafe(no_mangle)]
            pub static HORIZON_PLUGIN_DECLARATION: ::horizon_sdk::__private::ExportedDeclaration =
                ::horizon_sdk::__private::declare::<#self_ty>();
        };
    }
}
