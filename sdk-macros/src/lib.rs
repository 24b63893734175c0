//! The `#[horizon_plugin]` attribute of `horizon-plugin-sdk`. Use it through
//! `horizon_plugin_sdk::horizon_plugin`; this crate is an implementation detail.
//!
//! The pipeline: parse the impl, collect the `use` aliases of its bodies,
//! rewrite the bodies (`rewrite`), validate the impl (`validate`), and expand
//! the declaration (`expand`). Errors are collected rather than stopping at
//! the first, and the user's item is always emitted so the rest of the crate
//! still type-checks and IDEs keep working.

mod crate_name;
mod expand;
mod paths;
mod rewrite;
mod validate;

use proc_macro::TokenStream;

/// Turns `impl Plugin for T` into a loadable plugin.
///
/// See `horizon_plugin_sdk::horizon_plugin` for the full documentation.
#[proc_macro_attribute]
pub fn horizon_plugin(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::horizon_plugin(args.into(), input.into()).into()
}
