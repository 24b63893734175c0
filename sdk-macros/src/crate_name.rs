//! The name under which the plugin crate depends on the SDK, for the paths
//! the expansion names. A plugin may rename the dependency
//! (`sdk = { package = "horizon-plugin-sdk", .. }`); the name is read from
//! its `Cargo.toml` as serde's and tokio's macros do (the `proc-macro-crate`
//! crate). Generated code names it with a leading `::`, so a local module
//! of the same name cannot shadow it.

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Ident, Span};

/// The SDK's package name.
const SDK_PACKAGE: &str = "horizon-plugin-sdk";

/// The SDK's crate name as the plugin crate sees it, with `span`.
pub(crate) fn sdk(span: Span) -> Ident {
    let name = match crate_name(SDK_PACKAGE) {
        Ok(FoundCrate::Name(name)) => name,
        // The SDK's own tests and doc tests: they are other crates that
        // depend on it under its own name. And if the manifest cannot be
        // read, the default name is the best guess.
        Ok(FoundCrate::Itself) | Err(_) => SDK_PACKAGE.replace('-', "_"),
    };
    Ident::new(&name, span)
}

/// The host's package name: it re-exports what `#[derive(TypedEvent)]`
/// names (`TypedEvent`, `Request`, `Codec`) for hosts that depend on it
/// alone.
const HOST_PACKAGE: &str = "horizon-plugin-host";

/// The crate `#[derive(TypedEvent)]`'s expansion names: the SDK if the
/// crate depends on it, else the host crate if it depends on that, else
/// the SDK's default name.
pub(crate) fn events(span: Span) -> Ident {
    let name = match crate_name(SDK_PACKAGE) {
        Ok(FoundCrate::Name(name)) => name,
        Ok(FoundCrate::Itself) => SDK_PACKAGE.replace('-', "_"),
        Err(_) => match crate_name(HOST_PACKAGE) {
            Ok(FoundCrate::Name(name)) => name,
            _ => SDK_PACKAGE.replace('-', "_"),
        },
    };
    Ident::new(&name, span)
}
