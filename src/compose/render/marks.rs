//! Marks around the values an address template interpolates, so that the
//! address parser can tell the template's own text (syntax) from values
//! (never syntax) in the rendered output.
//!
//! A value is written as `OPEN value CLOSE`, with any of the three marker
//! characters inside it preceded by `ESCAPE`. The markers are private-use
//! characters: no address, name or template text has a reason to hold them,
//! and template text that does is refused rather than misread.

use std::borrow::Cow;

use crate::address::Part;

const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';
const ESCAPE: char = '\u{E002}';

fn is_marker(c: char) -> bool {
    matches!(c, OPEN | CLOSE | ESCAPE)
}

/// `value`, marked as one interpolated value.
pub(super) fn mark(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2 * OPEN.len_utf8());
    out.push(OPEN);
    for c in value.chars() {
        if is_marker(c) {
            out.push(ESCAPE);
        }
        out.push(c);
    }
    out.push(CLOSE);
    out
}

/// Split rendered output into the template's text and the marked values.
/// An error (a marker in the template's own text) says what is wrong.
pub(super) fn unmark(rendered: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = rendered;
    while let Some(open) = rest.find(is_marker) {
        if !rest[open..].starts_with(OPEN) {
            return Err(reserved(rest[open..].chars().next().unwrap_or(CLOSE)));
        }
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let body = &rest[open + OPEN.len_utf8()..];
        // Borrowed unless an escape forces a copy.
        let mut owned: Option<String> = None;
        let mut chars = body.char_indices();
        let end = loop {
            let Some((i, c)) = chars.next() else {
                return Err(reserved(OPEN));
            };
            match c {
                CLOSE => break i,
                OPEN => return Err(reserved(OPEN)),
                ESCAPE => {
                    let value = owned.get_or_insert_with(|| body[..i].to_string());
                    let (_, escaped) = chars.next().ok_or_else(|| reserved(ESCAPE))?;
                    value.push(escaped);
                }
                c => {
                    if let Some(value) = owned.as_mut() {
                        value.push(c);
                    }
                }
            }
        };
        parts.push(Part::Value(match owned {
            Some(v) => Cow::Owned(v),
            None => Cow::Borrowed(&body[..end]),
        }));
        rest = &body[end + CLOSE.len_utf8()..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

fn reserved(c: char) -> String {
    format!(
        "the template text holds U+{:04X}, a character mailshot reserves for marking values",
        c as u32
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_and_values_come_apart() {
        let rendered = format!("{} <{}>", mark("Eve, \"X\""), mark("e@x.example"));
        assert_eq!(
            unmark(&rendered).unwrap(),
            [
                Part::Value("Eve, \"X\"".into()),
                Part::Text(" <"),
                Part::Value("e@x.example".into()),
                Part::Text(">"),
            ]
        );
        assert_eq!(unmark("a@b.example").unwrap(), [Part::Text("a@b.example")]);
        assert_eq!(unmark(&mark("")).unwrap(), [Part::Value("".into())]);
    }

    #[test]
    fn markers_in_template_text_are_refused() {
        for bad in ["a\u{E000}b", "a\u{E001}b", "\u{E002}", "\u{E000}open"] {
            assert!(unmark(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn any_values_round_trip(
            texts in prop::collection::vec("[a-z<>@, \"]{0,4}", 0..4),
            values in prop::collection::vec("[a-z\u{E000}\u{E001}\u{E002}<>@,]{0,6}", 0..4),
        ) {
            let mut rendered = String::new();
            let mut want = Vec::new();
            for (i, v) in values.iter().enumerate() {
                let t = texts.get(i).map_or("", String::as_str);
                rendered.push_str(t);
                if !t.is_empty() {
                    want.push(Part::Text(t));
                }
                rendered.push_str(&mark(v));
                want.push(Part::Value(v.as_str().into()));
            }
            prop_assert_eq!(unmark(&rendered).unwrap(), want);
        }
    }
}
