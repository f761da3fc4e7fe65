//! Render errors as diagnostics a user can act on: the row, the template
//! file and line, and every undefined variable a template uses (minijinja
//! stops at the first), with the CSV columns that do exist.

use std::collections::HashSet;

use super::row::RowRender;
use super::{BUILTIN_NAMES, TEMPLATE_FUEL};
use crate::error::{Diagnostic, Location};
use minijinja::ErrorKind;

impl RowRender<'_> {
    pub(super) fn push_render_error(&mut self, name: &str, e: &minijinja::Error) {
        let key = if self.r.inline.contains(name) {
            format!("{name}: ")
        } else {
            String::new()
        };
        let failing = e.name().unwrap_or(name).to_string();
        let line = e.line().map(|l| l as u64);
        let location = self.with_row(self.r.template_location(&failing, line));
        if e.kind() == ErrorKind::OutOfFuel {
            self.diags.push(Diagnostic::new(
                location,
                format!(
                    "{key}template \"{failing}\" did not finish: it ran more than {TEMPLATE_FUEL} \
                     steps for this row (a loop that is too long or never ends?)"
                ),
            ));
            return;
        }
        if e.kind() != ErrorKind::UndefinedError {
            self.diags.push(Diagnostic::new(
                location,
                format!("{key}template error: {}", error_text(e)),
            ));
            return;
        }
        let snippet = match (e.template_source(), e.range()) {
            (Some(src), Some(range)) => src.get(range).unwrap_or("").trim().to_string(),
            _ => String::new(),
        };
        let ident = leading_identifier(&snippet);
        let mut reported = HashSet::new();
        if !ident.is_empty() && !self.is_defined(ident) {
            reported.insert(ident.to_string());
            self.diags.push(Diagnostic::new(
                Location {
                    field: Some(ident.to_string()),
                    ..location.clone()
                },
                format!("{key}undefined variable \"{ident}\"{}", self.column_hint()),
            ));
        } else {
            let what = if snippet.is_empty() {
                String::new()
            } else {
                format!(" in \"{snippet}\"")
            };
            self.diags.push(Diagnostic::new(
                location.clone(),
                format!("{key}undefined value{what}"),
            ));
        }
        // minijinja stops at the first undefined name; name the others the
        // template uses too, so one run shows every missing column.
        let mut others: Vec<&String> = self
            .r
            .undeclared
            .get(name)
            .into_iter()
            .flatten()
            .filter(|v| !self.is_defined(v) && !reported.contains(*v))
            .collect();
        others.sort();
        let template = self.r.env.get_template(name).ok();
        let source = template.as_ref().map(|t| t.source());
        for var in others {
            // minijinja gives no position for names it never reached; the
            // first line that mentions the name is where the user looks.
            let line = source.and_then(|src| first_line_naming(src, var));
            self.diags.push(Diagnostic::new(
                Location {
                    field: Some(var.clone()),
                    ..self.with_row(self.r.template_location(name, line))
                },
                format!("{key}undefined variable \"{var}\"{}", self.column_hint()),
            ));
        }
    }

    pub(super) fn is_defined(&self, name: &str) -> bool {
        BUILTIN_NAMES.contains(&name) || self.has_column(name)
    }

    pub(super) fn column_hint(&self) -> String {
        format!(
            " (not a CSV column; columns are: {})",
            self.rec.headers.join(", ")
        )
    }
}

/// The 1-based line of the first whole-word use of `ident` inside a
/// `{{ … }}` or `{% … %}` block of `source`.
pub(super) fn first_line_naming(source: &str, ident: &str) -> Option<u64> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut in_block = false;
    let mut line = 1u64;
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < source.len() {
        let rest = &source[i..];
        if rest.starts_with("{{") || rest.starts_with("{%") {
            in_block = true;
        } else if rest.starts_with("}}") || rest.starts_with("%}") {
            in_block = false;
        } else if bytes[i] == b'\n' {
            line += 1;
        } else if in_block
            && rest.starts_with(ident)
            && !source[..i].chars().next_back().is_some_and(is_word)
            && !rest[ident.len()..].chars().next().is_some_and(is_word)
        {
            return Some(line);
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// The error text without minijinja's "(in name:line)" suffix, which our
/// location already carries.
pub(super) fn error_text(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

pub(super) fn leading_identifier(s: &str) -> &str {
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_alphanumeric() && !(i == 0 && c.is_numeric())))
        .map_or(s.len(), |(i, _)| i);
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_naming_finds_whole_words_inside_blocks_only() {
        let src = "first second\n{{ firsts }}\n{% if x %}{{ first | upper }}{% endif %}\n";
        assert_eq!(first_line_naming(src, "first"), Some(3));
        assert_eq!(first_line_naming(src, "firsts"), Some(2));
        assert_eq!(first_line_naming(src, "second"), None);
    }
}
