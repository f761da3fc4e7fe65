//! Faster stand-ins for minijinja built-in filters whose stock versions
//! dominate a render: same name, same argument conversion, same output.
//!
//! minijinja's `title` formats every character through `write!`, about
//! 3,000 instructions for a two-word name; with `title` in the greeting of
//! both bodies that was a tenth of rendering a message.

use std::borrow::Cow;

use minijinja::Environment;

/// Registers the stand-ins on `env` (replacing the built-ins of the same name).
pub(super) fn register(env: &mut Environment<'_>) {
    env.add_filter("title", title);
}

/// `title`: a letter after whitespace, ASCII punctuation or the start is
/// upper-cased, every other letter lower-cased (Unicode case mapping, which
/// may change the length).
pub(super) fn title(v: Cow<'_, str>) -> String {
    let mut out = String::with_capacity(v.len());
    let mut capitalize = true;
    for c in v.chars() {
        if c.is_ascii_punctuation() || c.is_whitespace() {
            out.push(c);
            capitalize = true;
        } else if c.is_ascii() {
            out.push(if capitalize {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            });
            capitalize = false;
        } else if capitalize {
            out.extend(c.to_uppercase());
            capitalize = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;
    use proptest::prelude::*;

    /// Renders `source` with the stock filters and with the stand-ins.
    fn both(source: &str, name: &str) -> (String, String) {
        let stock = Environment::new();
        let mut fast = Environment::new();
        register(&mut fast);
        let render = |env: &Environment| {
            env.render_str(source, context! { name => name })
                .unwrap_or_else(|e| format!("error: {e}"))
        };
        (render(&stock), render(&fast))
    }

    #[test]
    fn title_is_the_stand_in_and_agrees_on_known_names() {
        let mut env = Environment::new();
        register(&mut env);
        assert_eq!(
            env.render_str("{{ 'ÉCOLE d\\'ÉTÉ o\\'neil mcDONALD' | title }}", ())
                .unwrap(),
            "École D'Été O'Neil Mcdonald"
        );
        for name in [
            "ada lovelace",
            "İstanbul ǆemal",
            "ß-straße",
            "x\u{2028}y",
            "",
            "12ab cd",
        ] {
            let (stock, fast) = both("{{ name | title }}", name);
            assert_eq!(stock, fast, "{name:?}");
        }
    }

    #[test]
    fn title_of_a_number_or_none_matches_the_built_in() {
        let stock = Environment::new();
        let mut fast = Environment::new();
        register(&mut fast);
        for source in [
            "{{ 12 | title }}",
            "{{ none | title }}",
            "{{ [1] | title }}",
        ] {
            let a = stock.render_str(source, ()).map_err(|e| e.kind());
            let b = fast.render_str(source, ()).map_err(|e| e.kind());
            assert_eq!(a, b, "{source}");
        }
    }

    proptest! {
        #[test]
        fn title_equals_minijinjas(name in "\\PC{0,24}") {
            let (stock, fast) = both("{{ name | title }}", &name);
            prop_assert_eq!(stock, fast);
        }

        #[test]
        fn title_equals_minijinjas_on_any_chars(name in any::<String>()) {
            prop_assert_eq!(title(Cow::Borrowed(&name)), minijinja::filters::title(Cow::Borrowed(&name)));
        }
    }
}
