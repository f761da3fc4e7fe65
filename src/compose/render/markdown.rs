//! Markdown (CommonMark via pulldown-cmark) to the HTML part, and the
//! escaping that keeps an inserted value from becoming Markdown syntax.

use std::borrow::Cow;

/// The auto-escape mode of Markdown templates.
pub(super) const MARKDOWN_ESCAPE: &str = "markdown";

/// A value inserted into Markdown is text: every ASCII punctuation character
/// gets a backslash (CommonMark §2.4), so it cannot open a link, an image,
/// raw HTML, an entity, emphasis or a block.
pub(super) fn markdown_escape(value: &str) -> Cow<'_, str> {
    if !value.bytes().any(|b| b.is_ascii_punctuation()) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

pub(super) fn markdown_to_html(md: &str) -> String {
    use pulldown_cmark::{html, Options, Parser};
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let mut body = String::new();
    html::push_html(&mut body, Parser::new_ext(md, options));
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{body}</body></html>\n"
    )
}
