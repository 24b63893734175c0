//! Checks that the attribute sits on `impl Plugin for T` with what the
//! expansion needs. Every problem is collected, none stops the others.

use syn::spanned::Spanned;
use syn::{ImplItem, ItemImpl, Type};

/// What the expansion needs from a valid impl.
pub(crate) struct PluginImpl<'a> {
    pub(crate) self_ty: &'a Type,
}

pub(crate) fn validate<'a>(
    item: &'a ItemImpl,
    errors: &mut Vec<syn::Error>,
) -> Option<PluginImpl<'a>> {
    let before = errors.len();
    let is_plugin_trait = matches!(&item.trait_,
        Some((None, path, _)) if path.segments.last().is_some_and(|s| s.ident == "Plugin"));
    if !is_plugin_trait {
        let span = match &item.trait_ {
            Some((_, path, _)) => path.span(),
            None => item.self_ty.span(),
        };
        errors.push(syn::Error::new(
            span,
            "`#[horizon_plugin]` goes on `impl Plugin for YourType`",
        ));
    }
    if !item.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "a plugin type cannot be generic: the library exports exactly one plugin",
        ));
    }
    let mut has_name = false;
    for impl_item in &item.items {
        match impl_item {
            ImplItem::Const(c) if c.ident == "NAME" => {
                has_name = true;
                if !is_static_str(&c.ty) {
                    errors.push(syn::Error::new_spanned(
                        &c.ty,
                        "`NAME` must be a `&'static str`",
                    ));
                }
            }
            ImplItem::Fn(f)
                if (f.sig.ident == "on_load" || f.sig.ident == "on_unload")
                    && f.sig.asyncness.is_none() =>
            {
                errors.push(syn::Error::new_spanned(
                    f.sig.fn_token,
                    format!(
                        "`{0}` must be an `async fn`: write `async fn {0}(&mut self, ctx: PluginContext) -> Result<(), PluginError>`",
                        f.sig.ident
                    ),
                ));
            }
            _ => {}
        }
    }
    if is_plugin_trait && !has_name {
        errors.push(syn::Error::new(
            item.brace_token.span.open(),
            "a plugin needs a name: add `const NAME: &'static str = \"my-plugin\";`",
        ));
    }
    (errors.len() == before).then_some(PluginImpl {
        self_ty: &item.self_ty,
    })
}

fn is_static_str(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => {
            r.mutability.is_none()
                && r.lifetime.as_ref().is_none_or(|l| l.ident == "static")
                && matches!(&*r.elem, Type::Path(p) if p.qself.is_none() && p.path.is_ident("str"))
        }
        _ => false,
    }
}
