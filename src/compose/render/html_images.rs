//! Local `<img src>` files in the HTML part become inline parts referenced
//! by `cid:` URLs (RFC 2392); remote, `data:` and `cid:` sources stay as
//! they are. `src` values are decoded with a full HTML entity decoder.

use std::borrow::Cow;

use super::files::Origin;
use super::markdown::markdown_to_html;
use super::row::RowRender;
use crate::compose::message::Attachment;

impl RowRender<'_> {
    /// Local `<img src="rel/path.png">` files become inline parts referenced
    /// by `cid:`; remote, `data:` and `cid:` sources are left alone.
    pub(super) fn inline_images(&mut self, html: String) -> (String, Vec<Attachment>) {
        if find_ci(&html, "<img").is_none() {
            return (html, Vec::new());
        }
        let mut out = String::with_capacity(html.len());
        let mut images: Vec<(String, Attachment)> = Vec::new();
        let mut rest = html.as_str();
        while let Some(pos) = find_ci(rest, "<img") {
            let tag_end = rest[pos..].find('>').map_or(rest.len(), |e| pos + e);
            let tag = &rest[pos..tag_end];
            let Some((vs, ve)) = src_value(tag) else {
                out.push_str(&rest[..tag_end]);
                rest = &rest[tag_end..];
                continue;
            };
            let src = &tag[vs..ve];
            if !is_local_src(&decode_src(src)) {
                out.push_str(&rest[..tag_end]);
                rest = &rest[tag_end..];
                continue;
            }
            let cid = match images.iter().find(|(s, _)| s == src) {
                Some((_, a)) => a.content_id.clone().unwrap_or_default(),
                None => {
                    let decoded = decode_src(src);
                    let origin = if self.r.literal_images.contains(&decoded) {
                        Origin::Literal
                    } else {
                        Origin::Rendered
                    };
                    let key = if self.r.markdown.is_some() {
                        "markdown"
                    } else {
                        "html"
                    };
                    let path = self.r.job_dir.join(&decoded);
                    match self.read_file(&decoded, origin, |e| {
                        format!("{key}: cannot read inline image \"{decoded}\": {e}")
                    }) {
                        Some(data) => {
                            let cid =
                                format!("img{}.row{}@mailshot", images.len() + 1, self.rec.row);
                            images.push((
                                src.to_string(),
                                Attachment {
                                    content_id: Some(cid.clone()),
                                    ..Attachment::from_file(&path, None, data)
                                },
                            ));
                            cid
                        }
                        None => String::new(),
                    }
                }
            };
            out.push_str(&rest[..pos + vs]);
            if cid.is_empty() {
                out.push_str(src);
            } else {
                out.push_str("cid:");
                out.push_str(&cid);
            }
            out.push_str(&rest[pos + ve..tag_end]);
            rest = &rest[tag_end..];
        }
        out.push_str(rest);
        (out, images.into_iter().map(|(_, a)| a).collect())
    }
}

pub(super) fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    let (hay, needle) = (haystack.as_bytes(), needle.as_bytes());
    let (&first, tail) = needle.split_first()?;
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    // memchr finds the candidates for the first byte; only those are compared.
    memchr::memchr2_iter(lower, upper, hay).find(|&i| {
        hay.get(i + 1..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(tail))
    })
}

/// Byte range of the `src` attribute's value inside an `<img …>` tag.
pub(super) fn src_value(tag: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(p) = find_ci(&tag[from..], "src") {
        let at = from + p;
        let before_ok = tag[..at].ends_with(|c: char| c.is_whitespace());
        let after = tag[at + 3..].trim_start();
        if before_ok && after.starts_with('=') {
            let value = after[1..].trim_start();
            let value_start = tag.len() - value.len();
            let quote = value.chars().next()?;
            if quote == '"' || quote == '\'' {
                let end = value[1..].find(quote)?;
                return Some((value_start + 1, value_start + 1 + end));
            }
            // Unquoted: up to whitespace; a trailing `/` is the tag's `/>`.
            let mut end = value.find(char::is_whitespace).unwrap_or(value.len());
            if end == value.len() && value.ends_with('/') {
                end -= 1;
            }
            return Some((value_start, value_start + end));
        }
        from = at + 3;
    }
    None
}

pub(super) fn is_local_src(src: &str) -> bool {
    let has_scheme = src
        .split_once(':')
        .is_some_and(|(s, _)| !s.is_empty() && !s.contains('/'));
    !src.is_empty() && !has_scheme && !src.starts_with("//") && !src.starts_with('#')
}

/// A `src` value as a path: every HTML character reference decoded (named,
/// decimal and hex), as a browser would.
pub(super) fn decode_src(src: &str) -> String {
    html_escape::decode_html_entities(src).into_owned()
}

/// The local `<img src>` values a template source names literally (no
/// template expression in them), decoded; Markdown images count too.
pub(super) fn literal_image_sources(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for html in [Cow::Borrowed(source), Cow::Owned(markdown_to_html(source))] {
        let mut rest = html.as_ref();
        while let Some(pos) = find_ci(rest, "<img") {
            let tag_end = rest[pos..].find('>').map_or(rest.len(), |e| pos + e);
            let tag = &rest[pos..tag_end];
            if let Some((vs, ve)) = src_value(tag) {
                let src = &tag[vs..ve];
                let decoded = decode_src(src);
                if is_local_src(&decoded) && !src.contains('{') {
                    out.push(decoded);
                }
            }
            rest = &rest[tag_end..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_ci_ignores_ascii_case_and_stops_at_the_end() {
        assert_eq!(find_ci("<p><IMG src=a>", "<img"), Some(3));
        assert_eq!(find_ci("<p><iMg", "<img"), Some(3));
        assert_eq!(find_ci("<p><im", "<img"), None);
        assert_eq!(find_ci("x SRC=", "src"), Some(2));
        assert_eq!(find_ci("", "src"), None);
    }

    #[test]
    fn unquoted_img_src_is_found() {
        let tag = "<img src=img/a.png/";
        let (s, e) = src_value(tag).unwrap();
        assert_eq!(&tag[s..e], "img/a.png");
        let tag = "<img data-src=\"x\" src=b.png alt=y";
        let (s, e) = src_value(tag).unwrap();
        assert_eq!(&tag[s..e], "b.png");
    }
}
