//! The last step: emits the (rewritten) impl, then either the plugin's
//! exported declaration or every error found.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ItemImpl;

use crate::validate::PluginImpl;

/// The user's item, then the declaration if `plugin` is valid and nothing
/// failed, or else every error in `errors`.
pub(crate) fn expand(
    item: &ItemImpl,
    plugin: Option<PluginImpl<'_>>,
    errors: Vec<syn::Error>,
) -> TokenStream {
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
    let sdk = crate::crate_name::sdk(proc_macro2::Span::call_site());
    quote! {
        const _: () = {
            // The host reads this symbol with `dlsym`; its layout is
            // `horizon_plugin_sdk::abi::PluginDeclaration`.
            #[unsafe(no_mangle)]
            pub static HORIZON_PLUGIN_DECLARATION: ::#sdk::__private::ExportedDeclaration =
                ::#sdk::__private::declare::<#self_ty>();
        };
        // The plugin's thread-local destructors go to the host, so that
        // host threads do not keep the library mapped after unload
        // (`horizon_plugin_sdk`'s `boundary::thread_exit`). Expanded here,
        // in the plugin crate, whose code is always linked into its library.
        ::#sdk::__private::thread_exit_hook!();
    }
}
