//! Parses the attribute's input: its arguments (it takes none) and the
//! item it sits on, which must be an impl.

use proc_macro2::TokenStream;
use syn::ItemImpl;

/// The parsed input, with the errors found so far.
pub(crate) struct Parsed {
    pub(crate) item: ItemImpl,
    pub(crate) errors: Vec<syn::Error>,
}

/// Parses the impl, then the arguments. `Err` holds what to emit instead:
/// the user's tokens unchanged (so IDEs and the rest of the crate keep
/// working) followed by the parse error.
pub(crate) fn parse(args: TokenStream, input: TokenStream) -> Result<Parsed, TokenStream> {
    let item: ItemImpl = match syn::parse2(input.clone()) {
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
            let mut out = input;
            out.extend(error.to_compile_error());
            return Err(out);
        }
    };
    let mut errors = Vec::new();
    if !args.is_empty() {
        errors.push(syn::Error::new_spanned(
            &args,
            "`#[horizon_plugin]` takes no arguments",
        ));
    }
    Ok(Parsed { item, errors })
}
