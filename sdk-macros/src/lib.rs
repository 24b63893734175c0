//! The `#[horizon_plugin]` attribute and `#[derive(TypedEvent)]` of
//! `horizon-plugin-sdk`. Use them through `horizon_plugin_sdk`; this crate is
//! an implementation detail.
//!
//! The pipeline, one module a step: `parse` the attribute's input,
//! `rewrite` the bodies (routing tokio paths through `paths`), `validate`
//! the impl, and `expand` the declaration. Errors are collected rather than
//! stopping at the first, and the user's item is always emitted so the rest
//! of the crate still type-checks and IDEs keep working.

mod crate_name;
mod expand;
mod parse;
mod paths;
mod rewrite;
mod typed_event;
mod validate;

use proc_macro::TokenStream;

/// Turns `impl Plugin for T` into a loadable plugin.
///
/// See `horizon_plugin_sdk::horizon_plugin` for the full documentation.
#[proc_macro_attribute]
pub fn horizon_plugin(args: TokenStream, input: TokenStream) -> TokenStream {
    pipeline(args.into(), input.into()).into()
}

/// Implements `horizon_plugin_sdk::TypedEvent` from `#[event(name = "..",
/// codec = json | postcard, answer = Type)]` (with `answer`, `Request` too).
///
/// See `horizon_plugin_sdk::TypedEvent` for the documentation.
#[proc_macro_derive(TypedEvent, attributes(event))]
pub fn derive_typed_event(input: TokenStream) -> TokenStream {
    typed_event::derive(input.into()).into()
}

/// The whole attribute, on `proc_macro2` tokens so it can be unit-tested.
fn pipeline(
    args: proc_macro2::TokenStream,
    input: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let parse::Parsed {
        mut item,
        mut errors,
    } = match parse::parse(args, input) {
        Ok(parsed) => parsed,
        Err(unparsed) => return unparsed,
    };
    // Validation runs after the rewrite, for two reasons: its result borrows
    // the impl as it is emitted (the declaration names the rewritten self
    // type), and the body's errors are reported before the impl's, in the
    // order the ui tests' `.stderr` snapshots pin.
    rewrite::rewrite(&mut item, &mut errors);
    let plugin = validate::validate(&item, &mut errors);
    expand::expand(&item, plugin, errors)
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
                    let expanded = super::pipeline(Default::default(), imp.to_token_stream());
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
