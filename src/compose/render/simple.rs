//! Templates that are only text and `{{ column }}` lookups, rendered without
//! the template engine.
//!
//! Most mail-merge templates are exactly that (a subject with a name in it,
//! `"{{ name }} <{{ email }}>"`, a letter with a dozen fields), and for them
//! setting up a minijinja evaluation costs more than the substitution itself.
//! A template qualifies only when every tag is `{{ identifier }}`; anything
//! else (filters, attributes, blocks, comments, whitespace control) is left
//! to minijinja. A row whose lookups are not all plain CSV columns falls back
//! to minijinja too, which then reports the undefined name as usual. The
//! unit tests check that the output is minijinja's, byte for byte.

use std::borrow::Cow;

use minijinja::AutoEscape;

use crate::compose::recipients::Recipient;

/// Names that are not column lookups in a template even when a CSV column
/// has that name: literals, and the context's own variables.
const NOT_COLUMNS: [&str; 9] = [
    "true", "false", "none", "True", "False", "None", "row", "job", "columns",
];

/// How interpolated values are escaped (the template's auto-escape mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Escape {
    /// As they are.
    None,
    /// HTML, as minijinja's default formatter escapes it.
    Html,
    /// Address templates: see `address_escape`.
    Address,
}

impl Escape {
    /// The mode for minijinja's auto-escape setting, if this module has it.
    pub(super) fn from_auto_escape(mode: AutoEscape, address: &str) -> Option<Escape> {
        match mode {
            AutoEscape::None => Some(Escape::None),
            AutoEscape::Html => Some(Escape::Html),
            AutoEscape::Custom(name) if name == address => Some(Escape::Address),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum Segment {
    Text(String),
    Column(String),
}

/// A parsed simple template.
#[derive(Debug)]
pub(super) struct Simple {
    segments: Vec<Segment>,
    escape: Escape,
    /// Literal text length, a capacity hint.
    text_len: usize,
}

impl Simple {
    /// `Some` when `source` is only text and `{{ identifier }}` tags.
    pub(super) fn parse(source: &str, escape: Escape) -> Option<Simple> {
        // The text is kept whole, the final newline too (the job's
        // environment sets keep_trailing_newline).
        let mut segments = Vec::new();
        let mut text_len = 0;
        let mut rest = source;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            match after.as_bytes().first() {
                Some(b'{') => {}
                // `{%` and `{#` start a block or a comment.
                Some(b'%' | b'#') => return None,
                _ => {
                    // A lone '{' is text.
                    let text = &rest[..open + 1];
                    push_text(&mut segments, text, &mut text_len);
                    rest = after;
                    continue;
                }
            }
            push_text(&mut segments, &rest[..open], &mut text_len);
            let inner = &after[1..];
            let close = inner.find("}}")?;
            let name = inner[..close].trim_matches([' ', '\t', '\r', '\n']);
            if !is_identifier(name) || NOT_COLUMNS.contains(&name) {
                return None;
            }
            segments.push(Segment::Column(name.to_string()));
            rest = &inner[close + 2..];
        }
        push_text(&mut segments, rest, &mut text_len);
        Some(Simple {
            segments,
            escape,
            text_len,
        })
    }

    /// The rendered text, or `None` when a name is not a column of `rec`.
    pub(super) fn render(
        &self,
        rec: &Recipient,
        address_escape: fn(&str) -> Cow<'_, str>,
    ) -> Option<String> {
        let mut out = String::with_capacity(self.text_len + 16 * self.segments.len());
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Column(name) => {
                    let value = rec.get(name)?;
                    match self.escape {
                        Escape::None => out.push_str(value),
                        Escape::Html => push_html_escaped(&mut out, value),
                        Escape::Address => out.push_str(&address_escape(value)),
                    }
                }
            }
        }
        Some(out)
    }
}

fn push_text(segments: &mut Vec<Segment>, text: &str, len: &mut usize) {
    if text.is_empty() {
        return;
    }
    *len += text.len();
    if let Some(Segment::Text(last)) = segments.last_mut() {
        last.push_str(text);
    } else {
        segments.push(Segment::Text(text.to_string()));
    }
}

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// minijinja's HTML escaping: `<`, `>`, `&`, `"`, `'` and `/`.
fn push_html_escaped(out: &mut String, value: &str) {
    let mut start = 0;
    for (i, b) in value.bytes().enumerate() {
        let entity = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            b'/' => "&#x2f;",
            _ => continue,
        };
        out.push_str(&value[start..i]);
        out.push_str(entity);
        start = i + 1;
    }
    out.push_str(&value[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::{Environment, UndefinedBehavior, Value};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn recipient(pairs: &[(&str, &str)]) -> Recipient {
        Recipient {
            row: 3,
            line: 4,
            email: "a@example.com".into(),
            headers: Arc::new(pairs.iter().map(|(h, _)| h.to_string()).collect()),
            values: pairs.iter().map(|(_, v)| v.to_string()).collect(),
            duplicate_of: None,
        }
    }

    fn no_address_escape(value: &str) -> Cow<'_, str> {
        Cow::Owned(format!("[{value}]"))
    }

    /// minijinja's rendering of `source` named `name` with the columns of `rec`.
    fn engine(name: &str, source: &str, rec: &Recipient) -> Option<String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.add_template_owned(name.to_string(), source.to_string())
            .ok()?;
        let ctx: std::collections::BTreeMap<&str, Value> = rec
            .headers
            .iter()
            .zip(&rec.values)
            .map(|(h, v)| (h.as_str(), Value::from(v)))
            .collect();
        env.get_template(name).ok()?.render(ctx).ok()
    }

    fn fast(name: &str, source: &str, rec: &Recipient) -> Option<String> {
        let mode = minijinja::default_auto_escape_callback(name);
        let escape = Escape::from_auto_escape(mode, "address")?;
        Simple::parse(source, escape)?.render(rec, no_address_escape)
    }

    #[test]
    fn only_text_and_plain_lookups_qualify() {
        for source in [
            "Hello {{ name }}",
            "{{name}}<{{ email }}>",
            "{ not a tag } {{\n name\t}}",
            "no tags at all\n",
        ] {
            assert!(Simple::parse(source, Escape::None).is_some(), "{source}");
        }
        for source in [
            "{{ name|upper }}",
            "{{ job.x }}",
            "{% if x %}y{% endif %}",
            "{# c #}",
            "{{- name }}",
            "{{ row }}",
            "{{ none }}",
            "{{ name }",
            "{{ 1 }}",
        ] {
            assert!(Simple::parse(source, Escape::None).is_none(), "{source}");
        }
    }

    #[test]
    fn matches_minijinja_on_the_bench_and_sample_shapes() {
        let rec = recipient(&[
            ("email", "a@example.com"),
            ("name", "Ada <\"&'/> Lovelace"),
            ("plan", "Plus"),
        ]);
        for (name, source) in [
            ("t.txt", "Hello {{ name }},\n\nYour {{ plan }} plan.\n"),
            ("t.html", "<p>Hello {{ name }}</p>\r\n"),
            ("subject", "Your {{ plan }} statement, {{ name }}"),
            ("t.txt", "{{email}}{{ plan }}\n\n"),
        ] {
            assert_eq!(
                fast(name, source, &rec),
                engine(name, source, &rec),
                "{source}"
            );
        }
    }

    #[test]
    fn a_name_that_is_not_a_column_falls_back() {
        let rec = recipient(&[("email", "a@example.com")]);
        let simple = Simple::parse("Hi {{ name }}", Escape::None).unwrap();
        assert_eq!(simple.render(&rec, no_address_escape), None);
    }

    #[test]
    fn address_templates_escape_each_value() {
        let rec = recipient(&[("email", "a@example.com"), ("name", "Eve")]);
        let simple = Simple::parse("{{ name }} <{{ email }}>", Escape::Address).unwrap();
        assert_eq!(
            simple.render(&rec, no_address_escape).as_deref(),
            Some("[Eve] <[a@example.com]>")
        );
    }

    proptest! {
        #[test]
        fn equals_minijinja_for_any_text_and_values(
            parts in prop::collection::vec(
                prop_oneof![
                    "[a-z <>&\"'/{}\\n\\r\\t%#-]{0,12}".prop_map(|t| (false, t)),
                    prop::sample::select(vec!["a", "b", "nope"]).prop_map(|n| (true, n.to_string())),
                ],
                0..8,
            ),
            a in "[ -~]{0,10}",
            b in "\\PC{0,6}",
            html in any::<bool>(),
            spaces in "[ \\t\\n]{0,2}",
        ) {
            let source: String = parts
                .iter()
                .map(|(var, t)| if *var { format!("{{{{{spaces}{t}{spaces}}}}}") } else { t.clone() })
                .collect();
            let rec = recipient(&[("a", &a), ("b", &b)]);
            let name = if html { "t.html" } else { "t.txt" };
            if let Some(out) = fast(name, &source, &rec) {
                prop_assert_eq!(Some(out), engine(name, &source, &rec), "{:?}", source);
            }
        }
    }
}
