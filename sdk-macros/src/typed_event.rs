//! `#[derive(TypedEvent)]`: reads `#[event(name = "..", codec = ..,
//! answer = ..)]` and implements `horizon_plugin_sdk::TypedEvent` with those
//! constants (and `Request`, with `answer`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{DeriveInput, LitStr};

use crate::crate_name;

/// The codecs the attribute accepts, as written there.
const CODECS: &[(&str, &str)] = &[("json", "Json"), ("postcard", "Postcard")];

/// The derive, on `proc_macro2` tokens: the impl, or the errors found.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    match expand(&input) {
        Ok(tokens) => tokens,
        Err(e) => e.to_compile_error(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut name: Option<LitStr> = None;
    let mut codec: Option<syn::Ident> = None;
    let mut answer: Option<syn::Type> = None;
    let mut attrs = input.attrs.iter().filter(|a| a.path().is_ident("event"));
    let Some(attr) = attrs.next() else {
        return Err(syn::Error::new(
            input.ident.span(),
            "`#[derive(TypedEvent)]` needs the event's name: add `#[event(name = \"...\")]`",
        ));
    };
    if let Some(second) = attrs.next() {
        return Err(syn::Error::new(
            second.span(),
            "one `#[event(..)]` attribute per type: merge them into one",
        ));
    }
    attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("name") {
            let lit: LitStr = meta.value()?.parse()?;
            if lit.value().is_empty() {
                return Err(syn::Error::new(lit.span(), "the event's name is empty"));
            }
            name = Some(lit);
            Ok(())
        } else if meta.path.is_ident("codec") {
            let ident: syn::Ident = meta.value()?.parse()?;
            if !CODECS.iter().any(|(written, _)| ident == written) {
                return Err(syn::Error::new(
                    ident.span(),
                    format!("unknown codec `{ident}`: expected `json` (the default) or `postcard`"),
                ));
            }
            codec = Some(ident);
            Ok(())
        } else if meta.path.is_ident("answer") {
            answer = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error(
                "unknown key: expected `name = \"...\"`, `codec = json | postcard` or `answer = Type`",
            ))
        }
    })?;
    let Some(name) = name else {
        return Err(syn::Error::new(
            attr.span(),
            "the event's name is missing: add `name = \"...\"`",
        ));
    };
    let sdk = crate_name::events(proc_macro2::Span::call_site());
    let variant = codec.map(|ident| {
        let (_, variant) = CODECS
            .iter()
            .find(|(written, _)| ident == written)
            .expect("checked above");
        let variant = syn::Ident::new(variant, ident.span());
        quote!(const CODEC: ::#sdk::Codec = ::#sdk::Codec::#variant;)
    });
    let ty = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let request = answer.map(|answer| {
        quote! {
            impl #impl_generics ::#sdk::Request for #ty #ty_generics #where_clause {
                type Answer = #answer;
            }
        }
    });
    Ok(quote! {
        impl #impl_generics ::#sdk::TypedEvent for #ty #ty_generics #where_clause {
            const NAME: &'static str = #name;
            #variant
        }
        #request
    })
}

#[cfg(test)]
mod tests {
    use quote::quote;

    fn derive(input: proc_macro2::TokenStream) -> String {
        super::derive(input).to_string()
    }

    #[test]
    fn names_and_codec() {
        let out = derive(quote! {
            #[event(name = "player:moved", codec = postcard)]
            struct Moved { x: f32 }
        });
        assert!(
            out.contains("const NAME : & 'static str = \"player:moved\""),
            "{out}"
        );
        assert!(out.contains("Codec :: Postcard"), "{out}");
        let out = derive(quote! { #[event(name = "a")] struct A; });
        assert!(!out.contains("CODEC") && !out.contains("Request"), "{out}");
        let out = derive(quote! { #[event(name = "q", answer = Vec<u8>)] struct Q; });
        assert!(
            out.contains("Request for Q") && out.contains("type Answer = Vec < u8 >"),
            "{out}"
        );
    }

    #[test]
    fn errors_name_the_fix() {
        for (input, expected) in [
            (quote! { struct A; }, "add `#[event(name = \\\"...\\\")]`"),
            (
                quote! { #[event(codec = json)] struct A; },
                "the event's name is missing",
            ),
            (
                quote! { #[event(name = "a", codec = cbor)] struct A; },
                "unknown codec `cbor`",
            ),
            (quote! { #[event(nme = "a")] struct A; }, "unknown key"),
            (
                quote! { #[event(name = "")] struct A; },
                "the event's name is empty",
            ),
            (
                quote! { #[event(name = "a")] #[event(name = "b")] struct A; },
                "one `#[event(..)]`",
            ),
        ] {
            let out = derive(input);
            assert!(out.contains("compile_error"), "{out}");
            assert!(out.contains(expected), "{expected} not in {out}");
        }
    }
}
