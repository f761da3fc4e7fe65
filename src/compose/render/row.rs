//! One row through the templates: the sender, recipients, subject and
//! headers (one logical line each, RFC 5322 §2.2), the bodies, the
//! `List-Unsubscribe` URIs (RFC 2369) and the attachments.

use std::sync::Arc;

use minijinja::{Template, Value};

use super::address_fill::address_escape;
use super::files::{FileError, Origin};
use super::markdown::markdown_to_html;
use super::simple::Simple;
use super::{context, lookup, Renderer};
use crate::address::Mailbox;
use crate::compose::message::{Attachment, Draft, FileBytes};
use crate::compose::recipients::Recipient;
use crate::error::{Diagnostic, Location};

/// Renders rows with the job's templates looked up once (see [`Renderer::rows`]).
pub struct RowsRenderer<'r> {
    pub(super) r: &'r Renderer,
    /// Template name → template, for every key and file the job sets
    /// (constant keys excepted).
    pub(super) templates: Vec<(String, Compiled<'r>)>,
}

/// A template, and its engine-free form when it has one.
pub(super) type Compiled<'r> = (Template<'r, 'r>, Option<Simple>);

impl RowsRenderer<'_> {
    /// Render one recipient; every problem in the row is reported.
    pub fn render(&self, recipient: &Recipient) -> std::result::Result<Draft, Vec<Diagnostic>> {
        let mut row = RowRender {
            r: self.r,
            templates: &self.templates,
            rec: recipient,
            ctx: None,
            diags: Vec::new(),
        };

        let mut draft = Draft {
            row: recipient.row,
            email: recipient.email.clone(),
            ..Draft::default()
        };

        if let Some(list) = row.addresses("from") {
            match list.len() {
                1 => draft.from = list.into_iter().next(),
                n => {
                    let d = row.diag_at_key("from", format!("from: expected one address, got {n}"));
                    row.diags.push(d);
                }
            }
        }
        draft.reply_to = row.addresses("reply_to").unwrap_or_default();
        if let Some(list) = row.addresses("return_path") {
            match list.len() {
                1 => draft.return_path = list.into_iter().next().map(|m| m.addr),
                n => {
                    let d = row.diag_at_key(
                        "return_path",
                        format!("return_path: expected one address, got {n}"),
                    );
                    row.diags.push(d);
                }
            }
        }
        if self.r.inline.contains("to") {
            if let Some(list) = row.addresses("to") {
                if list.is_empty() {
                    let d = row.diag_at_key("to", "to: rendered to an empty address list");
                    row.diags.push(d);
                }
                draft.to = list;
            }
        } else {
            draft.to = vec![Mailbox {
                name: None,
                addr: recipient.email.clone(),
            }];
        }
        draft.cc = row.addresses("cc").unwrap_or_default();
        draft.bcc = row.addresses("bcc").unwrap_or_default();
        if let Some(subject) = row.header_value("subject") {
            draft.subject = subject;
        }
        for name in &self.r.header_names {
            if let Some(v) = row.header_value(&format!("headers.{name}")) {
                draft.headers.push((name.clone(), v));
            }
        }
        if let Some(v) = row.header_value("list_unsubscribe") {
            draft.list_unsubscribe = row.list_unsubscribe(&v);
        }

        if let Some(md_name) = &self.r.markdown {
            if let Some(md) = row.render_template(md_name) {
                draft.html = Some(markdown_to_html(&md));
                // The text part shows inserted values as they are.
                draft.text = match &self.r.markdown_text {
                    Some(text) => row.render_template(text),
                    None => Some(md),
                };
            }
        }
        if let Some(name) = &self.r.text {
            draft.text = row.render_template(name);
        }
        if let Some(name) = &self.r.html {
            draft.html = row.render_template(name);
        }
        if let Some(html) = draft.html.take() {
            let (html, images) = row.inline_images(html);
            draft.html = Some(html);
            draft.attachments.extend(images);
        }
        for i in 0..self.r.attachments.len() {
            if let Some(a) = row.attachment(i) {
                draft.attachments.push(a);
            }
        }

        if row.diags.is_empty() {
            Ok(draft)
        } else {
            Err(row.diags)
        }
    }
}

/// The work of rendering one row: the context and the problems found so far.
pub(super) struct RowRender<'a> {
    pub(super) r: &'a Renderer,
    pub(super) templates: &'a [(String, Compiled<'a>)],
    pub(super) rec: &'a Recipient,
    /// The template context, made when a template first needs the engine.
    pub(super) ctx: Option<Value>,
    pub(super) diags: Vec<Diagnostic>,
}

impl RowRender<'_> {
    pub(super) fn with_row(&self, mut location: Location) -> Location {
        location.row = Some(self.rec.row);
        location
    }

    pub(super) fn diag_at_key(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.with_row(self.r.job_location(key)), message)
    }

    pub(super) fn has_column(&self, name: &str) -> bool {
        self.rec.headers.iter().any(|h| h == name)
    }

    /// Render a template by name; `None` (with diagnostics pushed) on failure
    /// or when the template does not exist (an optional key that is absent).
    pub(super) fn render_template(&mut self, name: &str) -> Option<String> {
        // A key the job does not set is no template (asking the environment
        // for it would run the loader, a disk search, on every row).
        if let Some(text) = lookup(&self.r.constants, name) {
            return Some(text.clone());
        }
        let (template, simple) = lookup(self.templates, name)?;
        if let Some(text) = simple
            .as_ref()
            .and_then(|s| s.render(self.rec, address_escape))
        {
            return Some(text);
        }
        let ctx = self
            .ctx
            .get_or_insert_with(|| context::row_context(self.rec, &self.r.vars));
        match template.render(&*ctx) {
            Ok(s) => Some(s),
            Err(e) => {
                self.push_render_error(name, &e);
                None
            }
        }
    }

    /// Render a value that goes into a header and refuse control characters.
    pub(super) fn header_value(&mut self, key: &str) -> Option<String> {
        let value = self.render_template(key)?;
        let printable = value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) || b == b'\t');
        if printable {
            return Some(value);
        }
        if let Some(bad) = value.chars().find(|&c| is_forbidden_in_header(c)) {
            let column = self
                .rec
                .headers
                .iter()
                .zip(&self.rec.values)
                .find(|(_, v)| v.chars().any(is_forbidden_in_header))
                .map(|(h, _)| h.clone());
            let mut location = self.with_row(self.r.job_location(key));
            location.field = column;
            self.diags.push(Diagnostic::new(
                location,
                format!(
                    "{key}: the rendered value contains a control character (U+{:04X}); a \
                     header value must be a single line, so this row is rejected",
                    bad as u32
                ),
            ));
            return None;
        }
        Some(value)
    }

    pub(super) fn list_unsubscribe(&mut self, value: &str) -> Vec<String> {
        let mut uris = Vec::new();
        for uri in value.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let scheme_ok = uri.split_once(':').is_some_and(|(s, rest)| {
                !s.is_empty()
                    && !rest.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            });
            let chars_ok = uri
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
            if scheme_ok && chars_ok {
                uris.push(uri.to_string());
            } else {
                let d = self.diag_at_key(
                    "list_unsubscribe",
                    format!(
                        "list_unsubscribe: \"{uri}\" is not a URI (use https://… or mailto:…, \
                         percent-encoded; try the urlencode filter)"
                    ),
                );
                self.diags.push(d);
            }
        }
        uris
    }

    pub(super) fn attachment(&mut self, i: usize) -> Option<Attachment> {
        let path_key = format!("attachments[{i}].path");
        let rendered = self.header_value(&path_key)?;
        let rendered = rendered.trim();
        if rendered.is_empty() {
            // A path that renders empty (`{% if %}` around it) means "no
            // attachment for this row".
            return None;
        }
        let name = if self.r.attachments[i] {
            Some(self.header_value(&format!("attachments[{i}].name"))?)
        } else {
            None
        };
        let origin = if lookup(&self.r.constants, &path_key).is_some() {
            Origin::Literal
        } else {
            Origin::Rendered
        };
        let path = self.r.job_dir.join(rendered);
        let data = self.read_file(rendered, origin, |e| {
            format!("{path_key}: cannot attach \"{rendered}\": {e}")
        })?;
        Some(Attachment::from_file(&path, name, data))
    }

    /// Read a file this row needs; a failure becomes a diagnostic naming the
    /// file and the row, with `what` saying which key wanted it.
    pub(super) fn read_file(
        &mut self,
        path: &str,
        origin: Origin,
        what: impl FnOnce(&FileError) -> String,
    ) -> Option<Arc<FileBytes>> {
        match self.r.disk.read(path, origin) {
            Ok(data) => Some(data),
            Err(e) => {
                let location = Location {
                    row: Some(self.rec.row),
                    ..Location::file(self.r.disk.display_path(path))
                };
                self.diags.push(Diagnostic::new(location, what(&e)));
                None
            }
        }
    }
}

pub(super) fn is_forbidden_in_header(c: char) -> bool {
    (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}'
}
