//! Templates → [`Draft`]: one minijinja `Environment` (strict undefined) per
//! job, rendering every template of the job for one recipient row.
//!
//! Owns template loading, auto-escaping, the per-row context, header-injection
//! checks (RFC 5322 §2.2: a header value is one logical line, so CR/LF from a
//! CSV value must never reach it), and turning attachments, Markdown
//! (CommonMark via pulldown-cmark) and local `<img>` sources (RFC 2392 `cid:`)
//! into draft parts. `templates` compiles, `row` renders one row,
//! `address_fill`, `html_images` and `markdown` do one part each of that, and
//! `diagnostics` turns render errors into located problems.
//!
//! **Template lookup rule.** The job's `text`/`html`/`markdown` files are
//! the paths the job names. A name `N` in `{% extends %}`, `{% include %}`,
//! `{% import %}` is looked up in a fixed list of roots, first match wins:
//! the job folder, then the `templates/` folder in it, one level above it and
//! two levels above it (`JOBDIR/templates`, `JOBDIR/../templates`,
//! `JOBDIR/../../templates`); a name starting with `templates/` is also
//! looked up without that prefix in the last three. No other folder is
//! searched. Absolute names and names with `..` are refused, and a symlink
//! cannot lead out of its root. So a job in `samples/newsletter/` can write
//! `{% extends "layout.html" %}` or `{% extends "templates/layout.html" %}` to
//! reach the repository's shared `templates/layout.html`.
//!
//! **Context.** Every CSV column by name (as strings), then `row` (1-based),
//! `job` (the job's `vars`) and `columns` (all columns as a map, for names that
//! are not identifiers, e.g. `columns["first name"]`). The three built-in names
//! win over columns of the same name; those columns stay reachable via `columns`.
//!
//! **Escaping.** The job's `html` file and files ending in `.html`/`.htm`/`.xml`
//! are HTML-escaped. In the job's `markdown` file (and `.md` files it
//! includes) every ASCII punctuation character of an inserted value is
//! backslash-escaped before pulldown-cmark runs, so a value cannot make a
//! link, image or raw HTML (inside a code span the backslashes show; `| safe`
//! inserts a value as Markdown); the text part is rendered without that
//! escaping.
//! Text, subject and header templates are not escaped.
//!
//! **Files.** Attachments and local `<img src>` files (also from Markdown
//! `![](…)`) are read through `files::Files`: a path made by a template
//! expression must stay inside the job's folder, a path written literally in
//! the job may point anywhere (see that module). `src` values are decoded
//! with one full HTML entity decoder first.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use minijinja::{AutoEscape, Environment, Value};

use crate::address::Mailbox;
use crate::compose::message::Draft;
use crate::compose::recipients::Recipient;
use crate::error::{Diagnostic, Location};
use crate::job::position::key_position;

mod address_fill;
mod context;
mod diagnostics;
mod files;
mod filters;
mod html_images;
mod loader;
mod markdown;
mod marks;
mod row;
mod simple;
mod templates;

pub use files::read_capped;
pub use row::RowsRenderer;

use address_fill::ADDRESS_ESCAPE;
use files::Files;
use simple::Simple;
use templates::auto_escape_mode;

/// Names that are not CSV columns but are always defined, plus minijinja's
/// global functions (they show up in `undeclared_variables`).
const BUILTIN_NAMES: &[&str] = &[
    "row",
    "job",
    "columns",
    "range",
    "dict",
    "namespace",
    "debug",
    "lipsum",
    "cycler",
    "joiner",
];

/// The instructions one template may run for one row (minijinja fuel): far
/// more than any mail merge needs, and used up in well under a second.
pub const TEMPLATE_FUEL: u64 = 2_000_000;

/// The job's templates, compiled once.
pub struct Renderer {
    env: Environment<'static>,
    job_path: PathBuf,
    job_dir: PathBuf,
    job_text: String,
    /// Template name → the file it was loaded from (filled by the loader).
    files: Arc<Mutex<HashMap<String, PathBuf>>>,
    /// Names of the inline templates (job keys such as `subject`).
    inline: Arc<Keys>,
    /// The job's own template files and their escaping (by role, not name).
    roles: Arc<Vec<(String, AutoEscape)>>,
    /// Attachment and inline-image files, confined and cached for the run.
    disk: Files,
    /// `src` values written literally in the job's template files (decoded).
    literal_images: HashSet<String>,
    /// The name the Markdown file is rendered under for the text part.
    markdown_text: Option<String>,
    /// Template name → variables it uses that it does not define itself.
    undeclared: HashMap<String, HashSet<String>>,
    header_names: Vec<String>,
    attachments: Vec<bool>,
    text: Option<String>,
    html: Option<String>,
    markdown: Option<String>,
    vars: Value,
    /// Inline templates without any tag: key → their text, rendered once.
    constants: Vec<(String, String)>,
    /// Address keys among those that parse: key → the addresses.
    constant_addresses: Vec<(String, Vec<Mailbox>)>,
}

impl Renderer {
    /// Render one recipient; every problem in the row is reported. For many
    /// rows, [`Renderer::rows`] looks the templates up once.
    pub fn render(&self, recipient: &Recipient) -> std::result::Result<Draft, Vec<Diagnostic>> {
        self.rows().render(recipient)
    }

    /// A renderer of many rows: the job's templates looked up once.
    pub fn rows(&self) -> RowsRenderer<'_> {
        let files = [&self.text, &self.html, &self.markdown, &self.markdown_text];
        let names = self.inline.0.iter().chain(files.into_iter().flatten());
        let templates = names
            .filter(|name| lookup(&self.constants, name).is_none())
            .filter_map(|name| {
                let template = self.env.get_template(name).ok()?;
                let simple =
                    simple::Escape::from_auto_escape(self.auto_escape(name), ADDRESS_ESCAPE)
                        .and_then(|escape| Simple::parse(template.source(), escape));
                Some((name.clone(), (template, simple)))
            })
            .collect();
        RowsRenderer { r: self, templates }
    }

    /// Every template file loaded so far (the job's `text`/`html`/`markdown`
    /// and what they extend, include or import). After every row has been
    /// rendered, this is every template file the messages were made from.
    pub fn template_files(&self) -> Vec<PathBuf> {
        let files = self.files.lock().expect("loader map poisoned");
        let mut paths: Vec<PathBuf> = files.values().cloned().collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// The auto-escape mode of template `name` (what the environment's
    /// callback says).
    fn auto_escape(&self, name: &str) -> AutoEscape {
        auto_escape_mode(&self.inline, &self.roles, name)
    }

    /// Where a job key is: the job file, at the key's line when it can be found.
    fn job_location(&self, key: &str) -> Location {
        Location {
            line: key_position(&self.job_text, &key_path(key)).0,
            ..Location::file(&self.job_path)
        }
    }

    /// Where a template is: the job file for inline templates, else its file.
    fn template_location(&self, name: &str, line: Option<u64>) -> Location {
        if self.inline.contains(name) {
            return self.job_location(name);
        }
        let file = self
            .files
            .lock()
            .expect("loader map poisoned")
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.job_dir.join(name));
        Location {
            line,
            ..Location::file(file)
        }
    }
}

/// A few job keys. Rows look keys up a dozen times each, and a scan of a
/// short list beats hashing the key.
#[derive(Debug)]
struct Keys(Vec<String>);

impl Keys {
    fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|k| k == key)
    }
}

/// A job key as the renderer names it (`subject`, `headers.X-Campaign`,
/// `attachments[1].path`) as a path of YAML keys.
fn key_path(key: &str) -> Vec<&str> {
    match key.split_once('.') {
        Some((top, rest)) => vec![top, rest],
        None => vec![key],
    }
}

/// The value for `key` in a short list of pairs.
fn lookup<'a, V>(pairs: &'a [(String, V)], key: &str) -> Option<&'a V> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

#[cfg(test)]
mod tests;
