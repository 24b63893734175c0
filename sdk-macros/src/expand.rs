//! Emits the plugin's exported declaration.

use proc_macro2::TokenStream;
use quote::quote;

use crate::validate::PluginImpl;

/// The exported declaration symbol, named by absolute paths only.
///
/// The symbol name is fixed (`HORIZON_PLUGIN_DECLARATION`, the name the host
/// looks up), so a second `#[horizon_plugin]` in one crate is a duplicate
/// symbol error.
pub(crate) fn declaration(plugin: &PluginImpl<'_>) -> TokenStream {
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
