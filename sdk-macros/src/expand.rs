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
            // An item that is no impl gets our hint; code that does not
            // parse at all keeps syn's own message, which says where.
            let error = match syn::parse2::<syn::Item>(input.clone()) {
                Ok(_) => syn::Error::new(
                    e.span(),
                    "`#[horizon_plugin]` goes on `impl Plugin for YourType`",
                ),
                Err(_) => e,
            };
            // Keep the user's tokens so IDEs and the rest of the crate keep working.
            let mut out = input;
            out.extend(error.to_compile_error());
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
    let sdk = crate::crate_name::sdk(proc_macro2::Span::call_site());
    quote! {
        const _: () = {
            // The host reads this symbol with `dlsym`; its layout is
            // `horizon_plugin_sdk::abi::PluginDeclaration`.
            #[unsafe(no_mangle)]
            pub static HORIZON_PLUGIN_DECLARATION: ::#sdk::__private::ExportedDeclaration =
                ::#sdk::__private::declare::<#self_ty>();
        };
    }
}

/// Committed expansion snapshots (`tests/expand/*.rs` → `*.expanded.rs`), in
/// the spirit of pin-project's `tests/expand`. Regenerate with
/// `HORIZON_BLESS=1 cargo test -p horizon-plugin-sdk-macros` and review the diff.
#[cfg(test)]
mod snapshots {
    use std::path::Path;

    use quote::ToTokens;

    fn expand_file(source: &str) -> String {
        let mut file = syn::parse_file(source).expect("snapshot input parses");
        let mut items = Vec::new();
        for item in file.items.drain(..) {
            match item {
                syn::Item::Impl(mut imp)
                    if imp
                        .attrs
                        .iter()
                        .any(|a| a.path().is_ident("horizon_plugin")) =>
                {
                    imp.attrs.retain(|a| !a.path().is_ident("horizon_plugin"));
                    let expanded = super::horizon_plugin(Default::default(), imp.to_token_stream());
                    let expanded: syn::File = syn::parse2(expanded).expect("expansion parses");
                    items.extend(expanded.items);
                }
                other => items.push(other),
            }
        }
        file.items = items;
        prettyplease::unparse(&file)
    }

    #[test]
    fn expansions_match_snapshots() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expand");
        let bless = std::env::var_os("HORIZON_BLESS").is_some();
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if !name.ends_with(".rs") || name.ends_with(".expanded.rs") {
                continue;
            }
            let expanded = expand_file(&std::fs::read_to_string(&path).unwrap());
            let snapshot = path.with_file_name(name.replace(".rs", ".expanded.rs"));
            if bless {
                std::fs::write(&snapshot, &expanded).unwrap();
            } else {
                let expected = std::fs::read_to_string(&snapshot).unwrap_or_else(|_| {
                    panic!("missing {}: run with HORIZON_BLESS=1", snapshot.display())
                });
                assert_eq!(
                    expanded, expected,
                    "expansion of {name} changed; rerun with HORIZON_BLESS=1 and review"
                );
            }
            checked += 1;
        }
        assert!(
            checked >= 2,
            "no snapshot inputs found in {}",
            dir.display()
        );
    }
}
