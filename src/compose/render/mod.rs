//! Templates → [`Draft`]: one minijinja `Environment` (strict undefined) per
//! job, rendering every template of the job for one recipient row.
//!
//! Owns template loading, auto-escaping, the per-row context, header-injection
//! checks (RFC 5322 §2.2: a header value is one logical line, so CR/LF from a
//! CSV value must never reach it), and turning attachments, Markdown
//! (CommonMark via pulldown-cmark) and local `<img>` sources (RFC 2392 `cid:`)
//! into draft parts.
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
//! `![](…)`) are read through [`files::Files`]: a path made by a template
//! expression must stay inside the job's folder, a path written literally in
//! the job may point anywhere (see that module). `src` values are decoded
//! with one full HTML entity decoder first.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use minijinja::{AutoEscape, Environment, ErrorKind, Template, UndefinedBehavior, Value};

use crate::compose::address::{AddressError, Part};
use crate::compose::message::{Attachment, Draft, FileBytes, Mailbox};
use crate::compose::recipients::Recipient;
use crate::error::{Diagnostic, Error, Location, Result};
use crate::job::Job;

mod context;
mod files;
mod loader;
mod marks;
mod simple;

pub use files::read_capped;
use files::{FileError, Files, Origin};
use loader::{resolve_template, template_roots};

use simple::Simple;

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
    /// Compile every template of the job (syntax errors name file, line and column).
    ///
    /// All syntax errors and invalid header names are collected into one
    /// [`Error::Invalid`]; a template file that does not exist is [`Error::NoInput`].
    pub fn new(job: &Job) -> Result<Self> {
        let job_dir = job.dir.canonicalize().unwrap_or_else(|_| job.dir.clone());
        let job_text = std::fs::read_to_string(&job.path).unwrap_or_default();
        let files: Arc<Mutex<HashMap<String, PathBuf>>> = Arc::default();

        let mut inline_sources: Vec<(String, String)> = Vec::new();
        inline_sources.push(("from".into(), job.from.clone()));
        for (key, value) in [
            ("reply_to", &job.reply_to),
            ("to", &job.to),
            ("cc", &job.cc),
            ("bcc", &job.bcc),
        ] {
            if let Some(v) = value {
                inline_sources.push((key.into(), v.clone()));
            }
        }
        inline_sources.push(("subject".into(), job.subject.clone()));
        for (name, value) in &job.headers {
            inline_sources.push((format!("headers.{name}"), value.clone()));
        }
        for (i, a) in job.attachments.iter().enumerate() {
            inline_sources.push((format!("attachments[{i}].path"), a.path.clone()));
            if let Some(n) = &a.name {
                inline_sources.push((format!("attachments[{i}].name"), n.clone()));
            }
        }
        if let Some(l) = &job.list_unsubscribe {
            inline_sources.push(("list_unsubscribe".into(), l.clone()));
        }
        let inline = Arc::new(Keys(
            inline_sources.iter().map(|(k, _)| k.clone()).collect(),
        ));
        // The job's template files: (role, file, template name), named by
        // their path relative to the job folder when they are inside it.
        let mut job_files = Vec::new();
        for (role, path) in [
            ("text", &job.text),
            ("html", &job.html),
            ("markdown", &job.markdown),
        ] {
            let Some(path) = path else { continue };
            let full = match path.canonicalize() {
                Ok(p) => p,
                Err(_) if path.is_relative() => job_dir.join(path),
                Err(_) => path.clone(),
            };
            let name = match full.strip_prefix(&job_dir) {
                Ok(rel) => rel.to_string_lossy().into_owned(),
                Err(_) => full.to_string_lossy().into_owned(),
            };
            job_files.push((role, full, name));
        }
        let mut roles: Vec<(String, AutoEscape)> = Vec::new();
        let mut markdown_text = None;
        for (role, _, name) in &job_files {
            match *role {
                "html" => roles.push((name.clone(), AutoEscape::Html)),
                "markdown" => {
                    roles.push((name.clone(), AutoEscape::Custom(MARKDOWN_ESCAPE)));
                    let text = format!("{name}#text");
                    roles.push((text.clone(), AutoEscape::None));
                    markdown_text = Some(text);
                }
                _ => roles.push((name.clone(), AutoEscape::None)),
            }
        }
        let roles = Arc::new(roles);

        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_debug(true);
        // A body file's final newline is part of the message: without it the
        // message would not end with CRLF.
        env.set_keep_trailing_newline(true);
        // Every render of a template gets this budget, so a runaway loop ends
        // with an error naming the row and the template instead of running on.
        env.set_fuel(Some(TEMPLATE_FUEL));
        let inline_names = Arc::clone(&inline);
        let file_roles = Arc::clone(&roles);
        env.set_auto_escape_callback(move |name| {
            auto_escape_mode(&inline_names, &file_roles, name)
        });
        env.set_formatter(|out, state, value| {
            if state.auto_escape() == AutoEscape::Custom(MARKDOWN_ESCAPE) && !value.is_safe() {
                match value.as_str() {
                    Some(text) => out.write_str(&markdown_escape(text))?,
                    None => out.write_str(&markdown_escape(&value.to_string()))?,
                }
                Ok(())
            } else if state.auto_escape() == AutoEscape::Custom(ADDRESS_ESCAPE) && !value.is_safe()
            {
                match value.as_str() {
                    Some(text) => out.write_str(&address_escape(text))?,
                    None => out.write_str(&address_escape(&value.to_string()))?,
                }
                Ok(())
            } else if let (AutoEscape::None, Some(text)) = (state.auto_escape(), value.as_str()) {
                // What the default formatter writes, without the fmt machinery.
                out.write_str(text)?;
                Ok(())
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        let roots = template_roots(&job_dir);
        let loader_files = Arc::clone(&files);
        env.set_loader(move |name| {
            let Some((path, source)) = resolve_template(&roots, name)? else {
                return Ok(None);
            };
            loader_files
                .lock()
                .expect("loader map poisoned")
                .insert(name.to_string(), path);
            Ok(Some(source))
        });

        let mut renderer = Renderer {
            env,
            job_path: job.path.clone(),
            disk: Files::new(&job_dir, job.max_attachment_size),
            job_dir,
            job_text,
            files,
            inline,
            roles,
            literal_images: HashSet::new(),
            markdown_text,
            undeclared: HashMap::new(),
            header_names: job.headers.iter().map(|(n, _)| n.clone()).collect(),
            attachments: job.attachments.iter().map(|a| a.name.is_some()).collect(),
            text: None,
            html: None,
            markdown: None,
            vars: Value::from_serialize(&job.vars),
            constants: Vec::new(),
            constant_addresses: Vec::new(),
        };

        let mut diags = Vec::new();
        for (name, _) in &job.headers {
            if let Some(problem) = crate::job::manifest::header_name_problem(name) {
                diags.push(Diagnostic::new(
                    renderer.job_location(&format!("headers.{name}")),
                    format!("headers: {problem}"),
                ));
            }
        }
        for (key, mut source) in inline_sources {
            // A job value is one line; a YAML block scalar's final newline
            // is not part of it.
            if source.ends_with('\n') {
                source.pop();
                if source.ends_with('\r') {
                    source.pop();
                }
            }
            let constant = !source.contains('{');
            if let Err(e) = renderer.env.add_template_owned(key.clone(), source) {
                diags.push(Diagnostic::new(
                    renderer.job_location(&key),
                    format!("{key}: template syntax error: {}", error_text(&e)),
                ));
            } else if constant {
                // No tag, expression or comment: the same text for every row.
                if let Ok(text) = renderer.env.get_template(&key).and_then(|t| t.render(())) {
                    renderer.constants.push((key, text));
                }
            }
        }
        let mut seen = HashSet::new();
        let mut to_check = Vec::new();
        for (role, full, name) in job_files {
            // Written in the job itself, so read as given (not through the
            // loader, whose names must stay inside the template roots).
            if !full.is_file() {
                let err = std::fs::metadata(&full)
                    .err()
                    .unwrap_or_else(|| std::io::Error::other("not a regular file"));
                return Err(Error::no_input(full, &err));
            }
            let source =
                std::fs::read_to_string(&full).map_err(|e| Error::no_input(full.clone(), &e))?;
            let mut names = vec![name.clone()];
            if role == "markdown" {
                names.extend(renderer.markdown_text.clone());
            }
            for (k, n) in names.into_iter().enumerate() {
                renderer
                    .files
                    .lock()
                    .expect("loader map poisoned")
                    .insert(n.clone(), full.clone());
                if let Err(e) = renderer.env.add_template_owned(n, source.clone()) {
                    if k > 0 || !seen.insert(name.clone()) {
                        continue;
                    }
                    let line = e.line().map(|l| l as u64);
                    diags.push(Diagnostic::new(
                        Location {
                            line,
                            ..Location::file(&full)
                        },
                        format!("template syntax error: {}", error_text(&e)),
                    ));
                }
            }
            let slot = match role {
                "text" => &mut renderer.text,
                "html" => &mut renderer.html,
                _ => &mut renderer.markdown,
            };
            *slot = Some(name.clone());
            to_check.push(name);
        }
        for name in to_check {
            renderer.check_template_file(&name, None, &mut seen, &mut diags);
        }
        for name in &seen {
            if let Ok(t) = renderer.env.get_template(name) {
                renderer
                    .literal_images
                    .extend(literal_image_sources(t.source()));
            }
        }
        if !diags.is_empty() {
            return Err(Error::Invalid(diags));
        }

        let mut undeclared = HashMap::new();
        for name in renderer.inline.0.iter().chain(seen.iter()) {
            if let Ok(t) = renderer.env.get_template(name) {
                let vars: HashSet<String> = t
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|v| !BUILTIN_NAMES.contains(&v.as_str()))
                    .collect();
                undeclared.insert(name.clone(), vars);
            }
        }
        renderer.undeclared = undeclared;
        renderer.constant_addresses = ADDRESS_KEYS
            .iter()
            .filter_map(|key| {
                let text = lookup(&renderer.constants, key)?;
                let list = parse_mailbox_list(text).ok()?;
                Some((key.to_string(), list))
            })
            .collect();
        Ok(renderer)
    }

    /// Compile a template file and, recursively, the files it statically
    /// extends/includes, so syntax errors surface before the first row.
    fn check_template_file(
        &self,
        name: &str,
        referenced_from: Option<&str>,
        seen: &mut HashSet<String>,
        diags: &mut Vec<Diagnostic>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        match self.env.get_template(name) {
            Ok(t) => {
                for child in static_references(t.source()) {
                    self.check_template_file(&child, Some(name), seen, diags);
                }
            }
            Err(e) if e.kind() == ErrorKind::TemplateNotFound => {
                let location = match referenced_from {
                    Some(parent) => self.template_location(parent, None),
                    None => self.template_location(name, None),
                };
                diags.push(Diagnostic::new(
                    location,
                    format!(
                        "template \"{name}\" not found (looked in the job folder and in the \
                         templates/ folder inside it, one level above it and two levels above it)"
                    ),
                ));
            }
            Err(e) if e.kind() == ErrorKind::InvalidOperation => {
                // The loader refused the name or could not read the file.
                let location = match referenced_from {
                    Some(parent) => self.template_location(parent, None),
                    None => self.template_location(name, None),
                };
                diags.push(Diagnostic::new(location, error_text(&e)));
            }
            Err(e) => {
                let template = e.name().unwrap_or(name).to_string();
                let line = e.line().map(|l| l as u64);
                diags.push(Diagnostic::new(
                    self.template_location(&template, line),
                    format!("template syntax error: {}", error_text(&e)),
                ));
            }
        }
    }

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
            line: key_line(&self.job_text, key),
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

/// Renders rows with the job's templates looked up once (see [`Renderer::rows`]).
pub struct RowsRenderer<'r> {
    r: &'r Renderer,
    /// Template name → template, for every key and file the job sets
    /// (constant keys excepted).
    templates: Vec<(String, Compiled<'r>)>,
}

/// A template, and its engine-free form when it has one.
type Compiled<'r> = (Template<'r, 'r>, Option<Simple>);

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
struct RowRender<'a> {
    r: &'a Renderer,
    templates: &'a [(String, Compiled<'a>)],
    rec: &'a Recipient,
    /// The template context, made when a template first needs the engine.
    ctx: Option<Value>,
    diags: Vec<Diagnostic>,
}

impl RowRender<'_> {
    fn with_row(&self, mut location: Location) -> Location {
        location.row = Some(self.rec.row);
        location
    }

    fn diag_at_key(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.with_row(self.r.job_location(key)), message)
    }

    fn has_column(&self, name: &str) -> bool {
        self.rec.headers.iter().any(|h| h == name)
    }

    /// Render a template by name; `None` (with diagnostics pushed) on failure
    /// or when the template does not exist (an optional key that is absent).
    fn render_template(&mut self, name: &str) -> Option<String> {
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

    fn push_render_error(&mut self, name: &str, e: &minijinja::Error) {
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

    fn is_defined(&self, name: &str) -> bool {
        BUILTIN_NAMES.contains(&name) || self.has_column(name)
    }

    fn column_hint(&self) -> String {
        format!(
            " (not a CSV column; columns are: {})",
            self.rec.headers.join(", ")
        )
    }

    /// Render a value that goes into a header and refuse control characters.
    fn header_value(&mut self, key: &str) -> Option<String> {
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

    /// An address key: rendered, checked, parsed. Blank renders as no address.
    fn addresses(&mut self, key: &str) -> Option<Vec<Mailbox>> {
        if let Some(list) = lookup(&self.r.constant_addresses, key) {
            return Some(list.clone());
        }
        let value = self.header_value(key)?;
        let parts = match marks::unmark(&value) {
            Ok(parts) => parts,
            Err(reason) => {
                let d = self.diag_at_key(key, format!("{key}: {reason}"));
                self.diags.push(d);
                return None;
            }
        };
        match crate::compose::address::parse_filled_list(&parts) {
            Ok(list) => Some(list),
            Err(e) => {
                let mut d = self.diag_at_key(key, format!("{key}: invalid address {e}"));
                d.location.field = e.value.and_then(|i| self.column_of_value(&parts, i));
                self.diags.push(d);
                None
            }
        }
    }

    /// The CSV column whose cell is the `index`-th value among `parts`
    /// (none when the value was computed, not looked up).
    fn column_of_value(&self, parts: &[Part<'_>], index: usize) -> Option<String> {
        let value = parts
            .iter()
            .filter_map(|p| match p {
                Part::Value(v) => Some(v),
                Part::Text(_) => None,
            })
            .nth(index)?;
        self.rec
            .headers
            .iter()
            .zip(&self.rec.values)
            .find(|(_, v)| *v == value)
            .map(|(h, _)| h.clone())
    }

    fn list_unsubscribe(&mut self, value: &str) -> Vec<String> {
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

    fn attachment(&mut self, i: usize) -> Option<Attachment> {
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
        let name = name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "attachment".into())
        });
        let content_type = mime_guess::from_path(&path)
            .first()
            .or_else(|| mime_guess::from_path(&name).first())
            .map(|m| m.essence_str().to_string())
            .unwrap_or_else(|| "application/octet-stream".into());
        Some(Attachment {
            name,
            content_type,
            data,
            content_id: None,
        })
    }

    /// Read a file this row needs; a failure becomes a diagnostic naming the
    /// file and the row, with `what` saying which key wanted it.
    fn read_file(
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

    /// Local `<img src="rel/path.png">` files become inline parts referenced
    /// by `cid:`; remote, `data:` and `cid:` sources are left alone.
    fn inline_images(&mut self, html: String) -> (String, Vec<Attachment>) {
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
                            let name = path
                                .file_name()
                                .map(|f| f.to_string_lossy().into_owned())
                                .unwrap_or_else(|| "image".into());
                            let content_type = mime_guess::from_path(&path)
                                .first_or_octet_stream()
                                .essence_str()
                                .to_string();
                            images.push((
                                src.to_string(),
                                Attachment {
                                    name,
                                    content_type,
                                    data,
                                    content_id: Some(cid.clone()),
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

/// The 1-based line of the first whole-word use of `ident` inside a
/// `{{ … }}` or `{% … %}` block of `source`.
fn first_line_naming(source: &str, ident: &str) -> Option<u64> {
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

/// A few job keys. Rows look keys up a dozen times each, and a scan of a
/// short list beats hashing the key.
#[derive(Debug)]
struct Keys(Vec<String>);

impl Keys {
    fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|k| k == key)
    }
}

/// Address keys escape interpolated values as addresses, other job keys not
/// at all, the job's own template files by their role, other template files
/// by their extension.
fn auto_escape_mode(inline: &Keys, roles: &[(String, AutoEscape)], name: &str) -> AutoEscape {
    if ADDRESS_KEYS.contains(&name) {
        AutoEscape::Custom(ADDRESS_ESCAPE)
    } else if inline.contains(name) {
        AutoEscape::None
    } else if let Some(mode) = lookup(roles, name) {
        *mode
    } else if name.ends_with(".md") || name.ends_with(".markdown") {
        AutoEscape::Custom(MARKDOWN_ESCAPE)
    } else {
        minijinja::default_auto_escape_callback(name)
    }
}

/// The auto-escape mode of Markdown templates.
const MARKDOWN_ESCAPE: &str = "markdown";

/// A value inserted into Markdown is text: every ASCII punctuation character
/// gets a backslash (CommonMark §2.4), so it cannot open a link, an image,
/// raw HTML, an entity, emphasis or a block.
fn markdown_escape(value: &str) -> Cow<'_, str> {
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

/// The value for `key` in a short list of pairs.
fn lookup<'a, V>(pairs: &'a [(String, V)], key: &str) -> Option<&'a V> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// The keys whose rendered value is a list of addresses.
const ADDRESS_KEYS: [&str; 5] = ["from", "reply_to", "to", "cc", "bcc"];

/// The auto-escape mode of address templates.
const ADDRESS_ESCAPE: &str = "address";

/// Every value interpolated into an address template is marked (see
/// `marks`), so that parsing the output can hold each value to the one token
/// of one address it fills (see [`crate::compose::address::parse_filled_list`]): a
/// CSV value can never add a recipient or change a domain.
fn address_escape(value: &str) -> Cow<'_, str> {
    Cow::Owned(marks::mark(value))
}

fn parse_mailbox_list(input: &str) -> std::result::Result<Vec<Mailbox>, AddressError> {
    crate::compose::address::parse_mailbox_list(input)
}

fn is_forbidden_in_header(c: char) -> bool {
    (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}'
}

/// Template names referenced by `{% extends/include/import/from "…" %}` with
/// a string literal (dynamic names are checked when rendered).
fn static_references(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        rest = &rest[start + 2..];
        let body = rest.trim_start_matches(['-', '+']).trim_start();
        let Some(after) = ["extends", "include", "import", "from"]
            .iter()
            .find_map(|kw| body.strip_prefix(kw))
        else {
            continue;
        };
        let after = after.trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        if let Some(end) = after[1..].find(quote) {
            names.push(after[1..1 + end].to_string());
        }
    }
    names
}

/// The line of a job key (`subject`, `headers.X-Campaign`,
/// `attachments[1].path`) in the job file text, by a light scan of the YAML.
fn key_line(text: &str, key: &str) -> Option<u64> {
    let (top, rest) = match key.split_once('.') {
        Some((t, r)) => (t, Some(r)),
        None => (key, None),
    };
    let (top, index) = match top.split_once('[') {
        Some((t, i)) => (t, i.trim_end_matches(']').parse::<usize>().ok()),
        None => (top, None),
    };
    let lines: Vec<&str> = text.lines().collect();
    let is_key = |line: &str, k: &str| {
        let l = line.trim_start().trim_start_matches("- ").trim_start();
        l.strip_prefix(k)
            .or_else(|| l.strip_prefix(&format!("\"{k}\"")))
            .or_else(|| l.strip_prefix(&format!("'{k}'")))
            .is_some_and(|r| r.trim_start().starts_with(':'))
    };
    let top_idx = lines
        .iter()
        .position(|l| !l.starts_with([' ', '\t']) && is_key(l, top))?;
    let found = |i: usize| Some(i as u64 + 1);
    let Some(sub) = rest else {
        return found(top_idx);
    };
    let block = lines[top_idx + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.starts_with([' ', '\t']) || l.starts_with('-'))
        .enumerate();
    let mut item: Option<usize> = None;
    for (offset, line) in block {
        if line.trim_start().starts_with("- ") || line.trim() == "-" {
            item = Some(item.map_or(0, |i| i + 1));
        }
        let in_item = index.is_none() || item == index;
        if in_item && is_key(line, sub) {
            return found(top_idx + 1 + offset);
        }
    }
    found(top_idx)
}

/// The error text without minijinja's "(in name:line)" suffix, which our
/// location already carries.
fn error_text(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn leading_identifier(s: &str) -> &str {
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_alphanumeric() && !(i == 0 && c.is_numeric())))
        .map_or(s.len(), |(i, _)| i);
    &s[..end]
}

fn markdown_to_html(md: &str) -> String {
    use pulldown_cmark::{html, Options, Parser};
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let mut body = String::new();
    html::push_html(&mut body, Parser::new_ext(md, options));
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{body}</body></html>\n"
    )
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
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
fn src_value(tag: &str) -> Option<(usize, usize)> {
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

fn is_local_src(src: &str) -> bool {
    let has_scheme = src
        .split_once(':')
        .is_some_and(|(s, _)| !s.is_empty() && !s.contains('/'));
    !src.is_empty() && !has_scheme && !src.starts_with("//") && !src.starts_with('#')
}

/// A `src` value as a path: every HTML character reference decoded (named,
/// decimal and hex), as a browser would.
fn decode_src(src: &str) -> String {
    html_escape::decode_html_entities(src).into_owned()
}

/// The local `<img src>` values a template source names literally (no
/// template expression in them), decoded; Markdown images count too.
fn literal_image_sources(source: &str) -> Vec<String> {
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
    use crate::job::{AttachmentSpec, RecipientsSpec};
    use std::path::Path;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn write(&self, rel: &str, content: &str) -> PathBuf {
            let p = self.dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            p
        }
        /// A job in `sub` (relative to the fixture root) whose YAML text is `yaml`.
        fn job(&self, sub: &str, yaml: &str) -> Job {
            let path = self.write(&format!("{sub}/job.yaml"), yaml);
            let dir = path.parent().unwrap().to_path_buf();
            Job {
                path,
                dir: dir.clone(),
                smtp: None,
                from: "News <news@example.com>".into(),
                reply_to: None,
                to: None,
                cc: None,
                bcc: None,
                subject: "Hello {{ email }}".into(),
                text: None,
                html: None,
                markdown: None,
                attachments: vec![],
                max_attachment_size: crate::job::manifest::DEFAULT_MAX_ATTACHMENT_SIZE,
                headers: vec![],
                list_unsubscribe: None,
                vars: serde_yaml::from_str("campaign: November").unwrap(),
                dkim: None,
                recipients: RecipientsSpec {
                    file: dir.join("recipients.csv"),
                    email_column: "email".into(),
                    delimiter: b',',
                    encoding: encoding_rs::UTF_8,
                    allow_duplicates: false,
                },
            }
        }
    }

    fn recipient(row: u64, pairs: &[(&str, &str)]) -> Recipient {
        let headers: Vec<String> = pairs.iter().map(|(h, _)| h.to_string()).collect();
        let values: Vec<String> = pairs.iter().map(|(_, v)| v.to_string()).collect();
        let email = pairs
            .iter()
            .find(|(h, _)| *h == "email")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        Recipient {
            row,
            line: row + 1,
            email,
            headers: Arc::new(headers),
            values,
            duplicate_of: None,
        }
    }

    fn invalid(r: Result<Renderer>) -> Vec<Diagnostic> {
        match r {
            Err(Error::Invalid(d)) => d,
            Err(e) => panic!("expected Invalid, got {e:?}"),
            Ok(_) => panic!("expected Invalid, got a renderer"),
        }
    }

    #[test]
    fn renders_text_html_subject_with_html_escaping_only_in_html() {
        let fx = Fixture::new();
        fx.write(
            "job/body.txt",
            "Hi {{ name }}, row {{ row }} of {{ job.campaign }}.",
        );
        fx.write("job/body.html", "<p>Hi {{ name }}</p>");
        let mut job = fx.job("job", "subject: x\n");
        job.text = Some("body.txt".into());
        job.html = Some(job.dir.join("body.html"));
        job.headers = vec![("X-Campaign".into(), "{{ job.campaign }}-{{ row }}".into())];
        job.subject = "Hello {{ name }}".into();
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(
                3,
                &[("email", "a@example.com"), ("name", "<script>")],
            ))
            .unwrap();
        assert_eq!(d.subject, "Hello <script>");
        assert_eq!(d.text.as_deref(), Some("Hi <script>, row 3 of November."));
        assert_eq!(d.html.as_deref(), Some("<p>Hi &lt;script&gt;</p>"));
        assert_eq!(
            d.headers,
            vec![("X-Campaign".to_string(), "November-3".to_string())]
        );
        assert_eq!(d.row, 3);
        assert_eq!(
            d.to,
            vec![Mailbox {
                name: None,
                addr: "a@example.com".into()
            }]
        );
        assert_eq!(d.from.unwrap().addr, "news@example.com");
    }

    #[test]
    fn columns_map_reaches_names_that_are_not_identifiers() {
        let fx = Fixture::new();
        let mut job = fx.job("job", "subject: x\n");
        job.subject = "{{ columns[\"first name\"] }} / {{ columns.row }} / {{ row }}".into();
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(
                2,
                &[
                    ("email", "a@example.com"),
                    ("first name", "Ann"),
                    ("row", "x"),
                ],
            ))
            .unwrap();
        assert_eq!(d.subject, "Ann / x / 2");
    }

    #[test]
    fn html_extends_a_layout_from_an_ancestor_templates_folder() {
        let fx = Fixture::new();
        fx.write(
            "templates/layout.html",
            "<html>{% block body %}{% endblock %}{% include \"footer.txt\" %}</html>",
        );
        fx.write("templates/footer.txt", "[{{ job.campaign }}]");
        fx.write(
            "samples/news/body.html",
            "{% extends \"layout.html\" %}{% block body %}<b>{{ name }}</b>{% endblock %}",
        );
        fx.write(
            "samples/news/alt.txt",
            "{% extends \"templates/layout.html\" %}{% block body %}{{ name }}{% endblock %}",
        );
        let mut job = fx.job("samples/news", "subject: x\n");
        job.html = Some("body.html".into());
        job.text = Some("alt.txt".into());
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(
                1,
                &[("email", "a@example.com"), ("name", "A&B")],
            ))
            .unwrap();
        assert_eq!(
            d.html.as_deref(),
            Some("<html><b>A&amp;B</b>[November]</html>")
        );
        assert_eq!(d.text.as_deref(), Some("<html>A&B[November]</html>"));
    }

    #[test]
    fn all_syntax_errors_are_reported_with_file_and_line() {
        let fx = Fixture::new();
        fx.write("templates/bad_layout.html", "ok\n{% block x %}\n{{ }}\n");
        fx.write(
            "job/body.html",
            "line1\nline2\n{% extends \"bad_layout.html\" %}\n",
        );
        fx.write("job/body.txt", "a\n\n{{ name \n");
        let mut job = fx.job(
            "job",
            "from: x\n# comment\nsubject: \"Hi {{ name\"\nheaders:\n  X-Ok: a\n  Bad Name: b\n",
        );
        job.subject = "Hi {{ name".into();
        job.text = Some("body.txt".into());
        job.html = Some("body.html".into());
        job.headers = vec![("X-Ok".into(), "a".into()), ("Bad Name".into(), "b".into())];
        let diags = invalid(Renderer::new(&job));
        let subject = diags
            .iter()
            .find(|d| d.message.starts_with("subject:"))
            .unwrap();
        assert_eq!(subject.location.file, job.path);
        assert_eq!(subject.location.line, Some(3));
        let text = diags
            .iter()
            .find(|d| d.location.file.ends_with("body.txt"))
            .expect("body.txt syntax error");
        assert_eq!(text.location.line, Some(3));
        let layout = diags
            .iter()
            .find(|d| d.location.file.ends_with("bad_layout.html"))
            .expect("layout syntax error found before any row");
        assert_eq!(layout.location.line, Some(3));
        let header = diags
            .iter()
            .find(|d| d.message.contains("Bad Name"))
            .unwrap();
        assert_eq!(header.location.line, Some(6));
        assert_eq!(diags.len(), 4, "{diags:#?}");
    }

    #[test]
    fn reserved_header_names_are_refused() {
        let fx = Fixture::new();
        let mut job = fx.job("job", "subject: x\n");
        job.headers = vec![
            ("bcc".into(), "x@example.com".into()),
            ("Content-Type".into(), "text/plain".into()),
            ("X-Fine".into(), "ok".into()),
        ];
        let diags = invalid(Renderer::new(&job));
        assert_eq!(diags.len(), 2, "{diags:#?}");
    }

    #[test]
    fn missing_template_file_is_no_input() {
        let fx = Fixture::new();
        let mut job = fx.job("job", "subject: x\n");
        job.text = Some("nope.txt".into());
        assert!(matches!(Renderer::new(&job), Err(Error::NoInput { .. })));
    }

    #[test]
    fn every_undefined_variable_in_a_row_is_reported() {
        let fx = Fixture::new();
        fx.write("job/body.txt", "Dear {{ nmae }},\n{{ city }} {{ zip }}\n");
        let mut job = fx.job("job", "from: x\nsubject: \"Hi {{ frist }}\"\n");
        job.subject = "Hi {{ frist }}".into();
        job.text = Some("body.txt".into());
        let r = Renderer::new(&job).unwrap();
        let diags = r
            .render(&recipient(5, &[("email", "a@example.com"), ("name", "A")]))
            .unwrap_err();
        let fields: HashSet<_> = diags
            .iter()
            .filter_map(|d| d.location.field.clone())
            .collect();
        let want: HashSet<String> = ["frist", "nmae", "city", "zip"].map(String::from).into();
        assert_eq!(fields, want, "{diags:#?}");
        assert!(diags.iter().all(|d| d.location.row == Some(5)));
        let subject = diags
            .iter()
            .find(|d| d.location.field.as_deref() == Some("frist"))
            .unwrap();
        assert_eq!(subject.location.file, job.path);
        assert_eq!(subject.location.line, Some(2));
        let nmae = diags
            .iter()
            .find(|d| d.location.field.as_deref() == Some("nmae"))
            .unwrap();
        assert!(nmae.location.file.ends_with("body.txt"));
        assert_eq!(nmae.location.line, Some(1));
        assert!(
            nmae.message.contains("columns are: email, name"),
            "{}",
            nmae.message
        );
    }

    #[test]
    fn crlf_in_a_csv_value_cannot_reach_a_header() {
        let fx = Fixture::new();
        let mut job = fx.job("job", "to: x\nsubject: x\n");
        job.to = Some("{{ name }} <{{ email }}>".into());
        job.subject = "Hi {{ name }}".into();
        let r = Renderer::new(&job).unwrap();
        let evil = "Eve\r\nBcc: victim@example.com";
        let diags = r
            .render(&recipient(
                7,
                &[("email", "eve@example.com"), ("name", evil)],
            ))
            .unwrap_err();
        assert_eq!(diags.len(), 2, "to and subject both rejected: {diags:#?}");
        for d in &diags {
            assert_eq!(d.location.row, Some(7));
            assert_eq!(d.location.field.as_deref(), Some("name"));
            assert!(d.message.contains("U+000D"), "{}", d.message);
        }
        assert!(diags.iter().any(|d| d.message.starts_with("to:")));
        assert!(diags.iter().any(|d| d.message.starts_with("subject:")));
    }

    #[test]
    fn a_csv_value_cannot_add_a_recipient_through_commas_or_brackets() {
        let fx = Fixture::new();
        let mut job = fx.job("job", "subject: x\n");
        job.to = Some("{{ name }} <{{ email }}>".into());
        job.cc = Some("{{ manager }}".into());
        let r = Renderer::new(&job).unwrap();
        let render = |name: &str, manager: &str| {
            r.render(&recipient(
                1,
                &[
                    ("email", "eve@example.com"),
                    ("name", name),
                    ("manager", manager),
                ],
            ))
        };
        // A comma in a name is a name, not a second address.
        let d = render("Smith, John", "").unwrap();
        assert_eq!(d.to.len(), 1);
        assert_eq!(d.to[0].name.as_deref(), Some("Smith, John"));
        assert_eq!(d.to[0].addr, "eve@example.com");
        // Text that would smuggle in another address stays inside the name.
        let d = render("Eve <victim@example.com>, X", "").unwrap();
        assert_eq!(d.envelope_recipients(), ["eve@example.com"]);
        // One address in a column is still an address.
        let d = render("Eve", "Boss <boss@example.com>").unwrap();
        assert_eq!(d.cc.len(), 1);
        assert_eq!(d.cc[0].addr, "boss@example.com");
        // A list in one cell is refused rather than fanned out.
        let err = render("Eve", "a@example.com, victim@example.com").unwrap_err();
        assert!(err.iter().any(|e| e.message.starts_with("cc:")), "{err:#?}");
    }

    #[test]
    fn addresses_lists_and_blank_cc() {
        let fx = Fixture::new();
        let mut job = fx.job("job", "subject: x\n");
        job.cc = Some("{{ manager }}".into());
        job.bcc = Some("audit@example.com".into());
        job.reply_to = Some("Help <help@example.com>".into());
        job.list_unsubscribe =
            Some("https://example.com/u?e={{ email | urlencode }}, mailto:u@example.com".into());
        let r = Renderer::new(&job).unwrap();
        let with = r
            .render(&recipient(
                1,
                &[
                    ("email", "a+b@example.com"),
                    ("manager", "Boss <boss@example.com>"),
                ],
            ))
            .unwrap();
        assert_eq!(with.cc[0].addr, "boss@example.com");
        assert_eq!(with.bcc[0].addr, "audit@example.com");
        assert_eq!(with.reply_to[0].addr, "help@example.com");
        assert_eq!(
            with.list_unsubscribe,
            vec![
                "https://example.com/u?e=a%2Bb%40example.com",
                "mailto:u@example.com"
            ]
        );
        let without = r
            .render(&recipient(
                2,
                &[("email", "c@example.com"), ("manager", "  ")],
            ))
            .unwrap();
        assert!(without.cc.is_empty());
    }

    #[test]
    fn partial_addresses_take_their_values_in_place() {
        let fx = Fixture::new();
        let mut job = fx.job("job", "subject: x\n");
        job.to = Some("{{ user }}@example.com".into());
        job.cc = Some("Manager <mgr+{{ id }}@example.com>, {{ boss }}".into());
        job.bcc = Some("archive+{{ id }}@{{ host }}.example.com".into());
        job.reply_to = Some("\"{{ name }} (help)\" <help@example.com>".into());
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(
                1,
                &[
                    ("email", "ann@example.org"),
                    ("user", "ann.b"),
                    ("id", "x-4"),
                    ("host", "eu"),
                    ("name", "Ann \"A\" B"),
                    ("boss", ""),
                ],
            ))
            .unwrap();
        let mb = |name: Option<&str>, addr: &str| Mailbox {
            name: name.map(str::to_string),
            addr: addr.to_string(),
        };
        assert_eq!(d.to, [mb(None, "ann.b@example.com")]);
        assert_eq!(d.cc, [mb(Some("Manager"), "mgr+x-4@example.com")]);
        assert_eq!(d.bcc, [mb(None, "archive+x-4@eu.example.com")]);
        assert_eq!(
            d.reply_to,
            [mb(Some("Ann \"A\" B (help)"), "help@example.com")]
        );
    }

    #[test]
    fn a_bad_value_names_its_column_row_and_key() {
        let fx = Fixture::new();
        let mut job = fx.job("job", "subject: x\nbcc: y\n");
        job.bcc = Some("archive+{{ id }}@example.com".into());
        let r = Renderer::new(&job).unwrap();
        let diags = r
            .render(&recipient(
                9,
                &[("email", "a@example.org"), ("id", "4, evil@x.example")],
            ))
            .unwrap_err();
        assert_eq!(diags.len(), 1, "{diags:#?}");
        let d = &diags[0];
        assert_eq!(d.location.row, Some(9));
        assert_eq!(d.location.field.as_deref(), Some("id"));
        assert_eq!(d.location.line, Some(2));
        assert!(d.message.starts_with("bcc: "), "{}", d.message);
        assert_eq!(
            d.message
                .matches("archive+4, evil@x.example@example.com")
                .count(),
            1,
            "{}",
            d.message
        );
    }

    /// For arbitrary values in each partial-address template, a row renders
    /// exactly the one address the template spells with the value in its
    /// place (fixed parts and literal domain unchanged), and the message
    /// built from it has one such recipient header, or the row is refused.
    #[test]
    fn any_value_fills_one_address_or_fails_the_row() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestCaseError, TestRunner};

        let fx = Fixture::new();
        let templates = [
            ("to", "{{ user }}@example.com"),
            ("bcc", "archive+{{ id }}@example.com"),
            ("cc", "Manager <mgr+{{ id }}@example.com>"),
            ("to", "{{ name }} <{{ email }}>"),
        ];
        let renderers: Vec<Renderer> = templates
            .iter()
            .enumerate()
            .map(|(i, (key, template))| {
                let mut job = fx.job(&format!("job{i}"), "subject: x\n");
                let slot = match *key {
                    "to" => &mut job.to,
                    "cc" => &mut job.cc,
                    _ => &mut job.bcc,
                };
                *slot = Some(template.to_string());
                Renderer::new(&job).unwrap()
            })
            .collect();
        let value = || {
            prop_oneof![
                "[a-z0-9]{1,8}",
                "[a-z0-9.+@<>,;:\"\\()\\[\\] %!\t\r\n\u{feff}\u{200b}\u{202e}\u{2028}\u{E000}\u{E001}\u{E002}-]{0,12}",
                any::<String>(),
                "[a-z]{1,4}@[a-z]{1,4}\\.example",
            ]
        };
        let mut runner = TestRunner::new(Config {
            cases: 512,
            ..Config::default()
        });
        runner
            .run(&(0..templates.len(), value(), value()), |(t, a, b)| {
                let email_col = if t == 3 {
                    b.as_str()
                } else {
                    "rcpt@example.org"
                };
                let rec = recipient(
                    3,
                    &[("email", email_col), ("user", &a), ("id", &a), ("name", &a)],
                );
                // Ordinary values must work: letters and digits, and for the
                // name template a plain address.
                let plain = |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric());
                let ordinary = plain(&a)
                    && (t != 3
                        || b.split_once('@').is_some_and(|(l, d)| {
                            plain(l) && d.ends_with(".example") && plain(&d[..d.len() - 8])
                        }));
                let d = match renderers[t].render(&rec) {
                    Ok(d) => d,
                    Err(diags) if ordinary => {
                        return Err(TestCaseError::fail(format!(
                            "{a:?} {b:?} refused: {diags:?}"
                        )));
                    }
                    Err(diags) => {
                        prop_assert!(!diags.is_empty());
                        prop_assert!(diags.iter().all(|d| d.location.row == Some(3)));
                        return Ok(());
                    }
                };
                let (key, expected) = match t {
                    0 => (
                        "to",
                        Mailbox {
                            name: None,
                            addr: format!("{a}@example.com"),
                        },
                    ),
                    1 => (
                        "bcc",
                        Mailbox {
                            name: None,
                            addr: format!("archive+{a}@example.com"),
                        },
                    ),
                    2 => (
                        "cc",
                        Mailbox {
                            name: Some("Manager".into()),
                            addr: format!("mgr+{a}@example.com"),
                        },
                    ),
                    _ => (
                        "to",
                        Mailbox {
                            name: Some(a.trim().to_string()).filter(|n| !n.is_empty()),
                            addr: b.trim().to_string(),
                        },
                    ),
                };
                prop_assert!(crate::compose::address::check_addr_spec(&expected.addr).is_ok());
                let list = match key {
                    "to" => &d.to,
                    "cc" => &d.cc,
                    _ => &d.bcc,
                };
                prop_assert_eq!(list, &vec![expected.clone()]);
                let mut envelope = vec![expected.addr.clone()];
                if t == 1 || t == 2 {
                    envelope.insert(0, "rcpt@example.org".into());
                }
                prop_assert_eq!(d.envelope_recipients(), envelope);
                // The message: one header per key, no Bcc, one recipient there.
                let raw = parse_back(&d);
                let msg = mail_parser::MessageParser::default()
                    .parse(&raw)
                    .ok_or_else(|| TestCaseError::fail("unparsable message"))?;
                let names: Vec<String> = msg
                    .headers()
                    .iter()
                    .map(|h| h.name().to_ascii_lowercase())
                    .collect();
                prop_assert!(!names.contains(&"bcc".to_string()), "{:?}", names);
                for field in ["from", "to", "cc", "subject"] {
                    prop_assert!(
                        names.iter().filter(|n| *n == field).count() <= 1,
                        "{:?}",
                        names
                    );
                }
                let shown = match key {
                    "cc" => msg.cc(),
                    _ => msg.to(),
                };
                if key != "bcc" {
                    prop_assert_eq!(shown.map(|a| a.iter().count()), Some(1));
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn attachments_are_read_named_and_typed() {
        let fx = Fixture::new();
        fx.write("job/reports/7.pdf", "%PDF-1.4 fake");
        let mut job = fx.job("job", "subject: x\nattachments:\n  - path: a\n  - path: \"reports/{{ id }}.pdf\"\n    name: n\n");
        job.attachments = vec![
            AttachmentSpec {
                path: "reports/{{ id }}.pdf".into(),
                name: None,
            },
            AttachmentSpec {
                path: "reports/{{ id }}.pdf".into(),
                name: Some("报告-{{ id }}.pdf".into()),
            },
            AttachmentSpec {
                path: "{% if extra %}x.pdf{% endif %}".into(),
                name: None,
            },
        ];
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(
                1,
                &[("email", "a@example.com"), ("id", "7"), ("extra", "")],
            ))
            .unwrap();
        assert_eq!(d.attachments.len(), 2);
        assert_eq!(d.attachments[0].name, "7.pdf");
        assert_eq!(d.attachments[0].content_type, "application/pdf");
        assert_eq!(d.attachments[0].data.as_bytes(), b"%PDF-1.4 fake");
        assert_eq!(d.attachments[1].name, "报告-7.pdf");

        let diags = r
            .render(&recipient(
                4,
                &[("email", "a@example.com"), ("id", "8"), ("extra", "")],
            ))
            .unwrap_err();
        assert_eq!(diags.len(), 2, "{diags:#?}");
        assert!(diags[0].location.file.ends_with("reports/8.pdf"));
        assert_eq!(diags[0].location.row, Some(4));
        assert!(diags[0].message.starts_with("attachments[0].path:"));
        assert!(diags[1].message.starts_with("attachments[1].path:"));
    }

    #[test]
    fn a_body_file_keeps_its_final_newline_and_a_header_value_gets_none() {
        let fx = Fixture::new();
        // One body the engine-free path renders, one that needs minijinja.
        fx.write("job/plain.txt", "Hi {{ name }}\n\nBye\n");
        fx.write(
            "job/page.html",
            "{% if name %}<p>{{ name }}</p>{% endif %}\r\n",
        );
        let mut job = fx.job("job", "subject: x\n");
        job.text = Some("plain.txt".into());
        job.html = Some("page.html".into());
        job.subject = "Hello {{ name }}\n".into();
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(
                1,
                &[("email", "a@example.com"), ("name", "Ann")],
            ))
            .unwrap();
        assert_eq!(d.text.as_deref(), Some("Hi Ann\n\nBye\n"));
        assert_eq!(d.html.as_deref(), Some("<p>Ann</p>\r\n"));
        assert_eq!(d.subject, "Hello Ann");
        // Without a final newline in the file there is none in the body.
        fx.write("job/plain.txt", "Hi {{ name }}");
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(
                1,
                &[("email", "a@example.com"), ("name", "Ann")],
            ))
            .unwrap();
        assert_eq!(d.text.as_deref(), Some("Hi Ann"));
    }

    #[test]
    fn a_runaway_loop_ends_with_an_error_naming_row_and_template() {
        let fx = Fixture::new();
        fx.write(
            "job/body.txt",
            "Hi {{ name }}\n{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}\n",
        );
        let mut job = fx.job("job", "subject: x\n");
        job.text = Some("body.txt".into());
        let r = Renderer::new(&job).unwrap();
        let started = std::time::Instant::now();
        let diags = r
            .render(&recipient(
                7,
                &[("email", "a@example.com"), ("name", "Ann")],
            ))
            .unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].location.row, Some(7));
        assert!(diags[0].location.file.ends_with("body.txt"), "{}", diags[0]);
        assert!(
            diags[0].message.contains("\"body.txt\" did not finish"),
            "{}",
            diags[0]
        );
    }

    #[test]
    fn markdown_renders_to_both_parts_without_escaping() {
        let fx = Fixture::new();
        fx.write("job/letter.md", "# Hello {{ name }}\n\n* one\n* two\n");
        let mut job = fx.job("job", "subject: x\n");
        job.markdown = Some("letter.md".into());
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(
                1,
                &[("email", "a@example.com"), ("name", "Ann & Bob")],
            ))
            .unwrap();
        assert_eq!(
            d.text.as_deref(),
            Some("# Hello Ann & Bob\n\n* one\n* two\n")
        );
        let html = d.html.unwrap();
        assert!(html.contains("<h1>Hello Ann &amp; Bob</h1>"), "{html}");
        assert!(html.contains("<li>one</li>"), "{html}");
    }

    #[test]
    fn local_images_become_inline_parts() {
        let fx = Fixture::new();
        fx.write("job/img/logo.png", "PNGDATA");
        fx.write(
            "job/body.html",
            "<img alt=x src=\"img/logo.png\"><img src='img/logo.png'><img src=\"https://e.com/a.png\"><img src=\"cid:k\">",
        );
        let mut job = fx.job("job", "subject: x\n");
        job.html = Some("body.html".into());
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(2, &[("email", "a@example.com")]))
            .unwrap();
        assert_eq!(d.attachments.len(), 1);
        let a = &d.attachments[0];
        assert_eq!(a.content_id.as_deref(), Some("img1.row2@mailshot"));
        assert_eq!(a.content_type, "image/png");
        assert_eq!(a.data.as_bytes(), b"PNGDATA");
        assert_eq!(
            d.html.as_deref(),
            Some("<img alt=x src=\"cid:img1.row2@mailshot\"><img src='cid:img1.row2@mailshot'><img src=\"https://e.com/a.png\"><img src=\"cid:k\">")
        );
    }

    /// An attachment path made from a value must stay inside the job folder;
    /// the same path written literally in the job may leave it.
    #[test]
    fn rendered_attachment_paths_stay_in_the_job_folder() {
        let fx = Fixture::new();
        fx.write("secret.txt", "SECRET");
        fx.write("job/docs/a.txt", "A");
        let mut job = fx.job("job", "subject: x\n");
        std::os::unix::fs::symlink(fx.dir.path().join("secret.txt"), job.dir.join("link")).unwrap();
        job.attachments = vec![AttachmentSpec {
            path: "{{ file }}".into(),
            name: None,
        }];
        let r = Renderer::new(&job).unwrap();
        let row =
            |n, file: &str| r.render(&recipient(n, &[("email", "a@example.com"), ("file", file)]));
        assert_eq!(
            row(1, "docs/a.txt").unwrap().attachments[0].data.as_bytes(),
            b"A"
        );
        for (n, bad) in [
            (2, "../secret.txt"),
            (3, "docs/../../secret.txt"),
            (4, "/etc/passwd"),
            (5, "link"),
        ] {
            let diags = row(n, bad).unwrap_err();
            assert_eq!(diags.len(), 1, "{bad}: {diags:#?}");
            let d = &diags[0];
            assert_eq!(d.location.row, Some(n));
            assert!(d.message.contains(bad), "{}", d.message);
            assert!(
                d.message.contains("outside the job's folder"),
                "{}",
                d.message
            );
        }

        job.attachments[0].path = "../secret.txt".into();
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(1, &[("email", "a@example.com")]))
            .unwrap();
        assert_eq!(d.attachments[0].data.as_bytes(), b"SECRET");
    }

    #[test]
    fn values_in_markdown_cannot_make_images_links_or_html() {
        let fx = Fixture::new();
        fx.write(
            "job/letter.md",
            "Hello {{ name }}\n\n![logo](img/logo.png)\n",
        );
        fx.write("job/img/logo.png", "PNG");
        let mut job = fx.job("job", "subject: x\n");
        job.markdown = Some("letter.md".into());
        let r = Renderer::new(&job).unwrap();
        for evil in [
            "![x](/proc/self/environ)",
            "<img src=\"/etc/passwd\">",
            "[a](img/logo.png) ![b](img/logo.png)",
            "\n\n<img src='/etc/hostname'>",
            "&lt;img src=/etc/passwd&gt;",
        ] {
            let d = r
                .render(&recipient(1, &[("email", "a@example.com"), ("name", evil)]))
                .unwrap_or_else(|e| panic!("{evil}: {e:#?}"));
            // Only the template's own image is attached.
            assert_eq!(d.attachments.len(), 1, "{evil}: {:#?}", d.attachments);
            assert_eq!(d.attachments[0].data.as_bytes(), b"PNG");
            let html = d.html.unwrap();
            assert_eq!(html.matches("<img").count(), 1, "{evil}: {html}");
            assert!(!html.contains("<a "), "{evil}: {html}");
            // The text part shows the value as it is.
            let text = d.text.unwrap();
            assert!(text.contains(evil.trim_start()), "{evil}: {text}");
        }
    }

    #[test]
    fn markdown_escaping_keeps_ordinary_merges_and_safe_opts_out() {
        let fx = Fixture::new();
        fx.write(
            "job/letter.md",
            "Dear {{ name }}, see [your page](https://example.com/u/{{ id }}?e={{ email | urlencode }}).\n\n{{ extra | safe }}\n",
        );
        let mut job = fx.job("job", "subject: x\n");
        job.markdown = Some("letter.md".into());
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(
                1,
                &[
                    ("email", "a+b@example.com"),
                    ("name", "O'Neil *Jr.*"),
                    ("id", "7-b"),
                    ("extra", "**bold**"),
                ],
            ))
            .unwrap();
        let html = d.html.unwrap();
        assert!(html.contains("Dear O'Neil *Jr.*,"), "{html}");
        assert!(
            html.contains("href=\"https://example.com/u/7-b?e=a%2Bb%40example.com\""),
            "{html}"
        );
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(d.text.unwrap().starts_with("Dear O'Neil *Jr.*, see"));
    }

    #[test]
    fn img_src_values_are_entity_decoded_and_confined() {
        let fx = Fixture::new();
        fx.write("job/img/logo.png", "LOGO");
        fx.write("job/img/o'brien.png", "OB");
        fx.write("shared.png", "SHARED");
        fx.write("secret.png", "SECRET");
        fx.write(
            "job/body.html",
            "<img src=\"{{ pic }}\"><img src=\"../shared.png\"><img src=\"img&#x2f;logo&period;png\">",
        );
        let mut job = fx.job("job", "subject: x\n");
        job.html = Some("body.html".into());
        let r = Renderer::new(&job).unwrap();
        let row =
            |n, pic: &str| r.render(&recipient(n, &[("email", "a@example.com"), ("pic", pic)]));
        let d = row(1, "img/logo.png").unwrap();
        let data: Vec<&[u8]> = d.attachments.iter().map(|a| a.data.as_bytes()).collect();
        assert_eq!(data, [&b"LOGO"[..], b"SHARED", b"LOGO"]);
        assert_eq!(
            row(2, "img/o'brien.png").unwrap().attachments[0]
                .data
                .as_bytes(),
            b"OB"
        );
        // The literal `../shared.png` is the job's own (a value that repeats
        // it gets that same file); any other path out is refused.
        assert!(row(3, "../shared.png").is_ok());
        for (n, bad) in [
            (4, "../secret.png"),
            (5, "/etc/passwd"),
            (6, "img/../../secret.png"),
        ] {
            let diags = row(n, bad).unwrap_err();
            assert_eq!(diags.len(), 1, "{diags:#?}");
            assert!(diags[0].message.contains(bad), "{}", diags[0].message);
            assert!(diags[0].message.contains("outside"), "{}", diags[0].message);
            assert_eq!(diags[0].location.row, Some(n));
        }
    }

    #[test]
    fn template_names_stay_in_the_job_folder_and_nearby_templates_folders() {
        let fx = Fixture::new();
        fx.write("a/templates/far.txt", "far");
        fx.write("a/b/templates/near.txt", "near");
        fx.write("a/b/c/secret.txt", "secret");
        fx.write("a/b/c/job/body.txt", "{% include \"near.txt\" %}");
        let mut job = fx.job("a/b/c/job", "subject: x\n");
        job.text = Some("body.txt".into());
        let r = Renderer::new(&job).unwrap();
        let d = r
            .render(&recipient(1, &[("email", "a@example.com")]))
            .unwrap();
        assert_eq!(d.text.as_deref(), Some("near"));

        for (include, want) in [
            ("far.txt", "not found"),
            ("../secret.txt", "refused"),
            ("/etc/hostname", "refused"),
            ("templates/../../secret.txt", "refused"),
        ] {
            fx.write(
                "a/b/c/job/body.txt",
                &format!("{{% include \"{include}\" %}}"),
            );
            let diags = invalid(Renderer::new(&job));
            assert_eq!(diags.len(), 1, "{include}: {diags:#?}");
            assert!(diags[0].message.contains(include), "{}", diags[0].message);
            assert!(diags[0].message.contains(want), "{}", diags[0].message);
            assert!(diags[0].location.file.ends_with("body.txt"), "{diags:#?}");
        }
    }

    #[test]
    fn a_file_every_row_attaches_is_read_once() {
        let fx = Fixture::new();
        fx.write("job/terms.pdf", "%PDF terms");
        fx.write("job/logo.png", "PNG");
        fx.write(
            "job/body.html",
            "<img src=\"logo.png\"><img src=\"{{ pic }}\">",
        );
        let mut job = fx.job("job", "subject: x\n");
        job.html = Some("body.html".into());
        job.attachments = vec![
            AttachmentSpec {
                path: "terms.pdf".into(),
                name: None,
            },
            AttachmentSpec {
                path: "{{ doc }}".into(),
                name: None,
            },
        ];
        let r = Renderer::new(&job).unwrap();
        let rows = r.rows();
        let drafts: Vec<Draft> = (1..=50)
            .map(|n| {
                rows.render(&recipient(
                    n,
                    &[
                        ("email", "a@example.com"),
                        ("doc", "terms.pdf"),
                        ("pic", "logo.png"),
                    ],
                ))
                .unwrap()
            })
            .collect();
        assert_eq!(r.disk.reads(), 2, "terms.pdf and logo.png, once each");
        let first = &drafts[0].attachments;
        // The value repeats the literal image, which is one part per message.
        assert_eq!(first.len(), 3);
        for d in &drafts {
            for (a, b) in d.attachments.iter().zip(first) {
                assert!(Arc::ptr_eq(&a.data, &b.data), "the bytes are shared");
            }
        }
    }

    #[test]
    fn max_attachment_size_refuses_larger_files_and_non_regular_ones() {
        let fx = Fixture::new();
        fx.write("job/big.bin", &"x".repeat(2_000));
        fx.write("job/small.bin", "ok");
        fx.write("job/body.html", "<img src=\"big.bin\">");
        let mut job = fx.job("job", "subject: x\n");
        job.max_attachment_size = 1_000;
        job.attachments = vec![AttachmentSpec {
            path: "{{ f }}".into(),
            name: None,
        }];
        let r = Renderer::new(&job).unwrap();
        let row = |f: &str| r.render(&recipient(3, &[("email", "a@example.com"), ("f", f)]));
        assert!(row("small.bin").is_ok());
        let diags = row("big.bin").unwrap_err();
        assert!(diags[0].message.contains("big.bin"), "{}", diags[0].message);
        assert!(
            diags[0].message.contains("max_attachment_size (1KB)"),
            "{}",
            diags[0].message
        );
        assert_eq!(r.disk.reads(), 1, "the big file was never read");

        job.attachments[0].path = "/dev/zero".into();
        let r = Renderer::new(&job).unwrap();
        let diags = r
            .render(&recipient(1, &[("email", "a@example.com")]))
            .unwrap_err();
        assert!(
            diags[0].message.contains("/dev/zero"),
            "{}",
            diags[0].message
        );
        assert!(
            diags[0].message.contains("not a regular file"),
            "{}",
            diags[0].message
        );

        job.attachments.clear();
        job.html = Some("body.html".into());
        let r = Renderer::new(&job).unwrap();
        let diags = r
            .render(&recipient(1, &[("email", "a@example.com")]))
            .unwrap_err();
        assert!(
            diags[0].message.contains("max_attachment_size"),
            "{}",
            diags[0].message
        );
    }

    #[test]
    fn renderer_can_move_to_a_render_thread() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Renderer>();
    }

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

    #[test]
    fn first_line_naming_finds_whole_words_inside_blocks_only() {
        let src = "first second\n{{ firsts }}\n{% if x %}{{ first | upper }}{% endif %}\n";
        assert_eq!(first_line_naming(src, "first"), Some(3));
        assert_eq!(first_line_naming(src, "firsts"), Some(2));
        assert_eq!(first_line_naming(src, "second"), None);
    }

    #[test]
    fn key_line_finds_nested_keys() {
        let yaml = "from: a\nheaders:\n  X-One: 1\n  \"X-Two\": 2\nattachments:\n  - path: p0\n  - name: n1\n    path: p1\nsubject: s\n";
        assert_eq!(key_line(yaml, "from"), Some(1));
        assert_eq!(key_line(yaml, "headers.X-Two"), Some(4));
        assert_eq!(key_line(yaml, "attachments[0].path"), Some(6));
        assert_eq!(key_line(yaml, "attachments[1].path"), Some(8));
        assert_eq!(key_line(yaml, "subject"), Some(9));
        assert_eq!(key_line(yaml, "cc"), None);
    }

    /// Loads a sample job with the real job loader and renders every row of
    /// its CSV with the real reader.
    fn render_sample(name: &str) -> Vec<Draft> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples")
            .join(name)
            .join("job.yaml");
        let job = crate::job::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
        let renderer = Renderer::new(&job).unwrap_or_else(|e| panic!("{e}"));
        crate::compose::recipients::RecipientReader::open(&job.recipients)
            .unwrap()
            .map(|rec| {
                let rec = rec.unwrap_or_else(|d| panic!("{d}"));
                renderer
                    .render(&rec)
                    .unwrap_or_else(|d| panic!("row {}: {d:#?}", rec.row))
            })
            .collect()
    }

    fn parse_back(d: &Draft) -> Vec<u8> {
        let opts = crate::compose::mime::MimeOptions {
            date: 1_793_611_800,
            message_id: crate::compose::mime::message_id("sample", d.row, d.from.as_ref().unwrap()),
        };
        crate::compose::mime::build(d, &opts)
    }

    #[test]
    fn sample_newsletter_renders_every_row_in_its_language() {
        use mail_parser::MessageParser;
        let drafts = render_sample("newsletter");
        assert!(drafts.len() >= 6);
        let zh = drafts
            .iter()
            .find(|d| d.email == "li.lei@example.com")
            .unwrap();
        assert!(zh.subject.contains("李雷，本月新茶到了"), "{}", zh.subject);
        assert!(zh.html.as_deref().unwrap().contains("lang=\"zh-CN\""));
        assert!(zh
            .html
            .as_deref()
            .unwrap()
            .contains("Acme Tea Club, 12 Harbour Road"));
        assert!(zh.text.as_deref().unwrap().contains("龙井"));
        let en = drafts
            .iter()
            .find(|d| d.email == "alice@example.org")
            .unwrap();
        assert!(en
            .subject
            .starts_with("Tea Letter, November 2026: Alice Walker"));
        assert!(en
            .text
            .as_deref()
            .unwrap()
            .starts_with("Hello Alice Walker,"));
        assert_eq!(
            en.headers,
            vec![("X-Campaign".to_string(), "2026-11".to_string())]
        );
        assert!(en.list_unsubscribe[0].starts_with("https://"));
        let bytes = parse_back(zh);
        let m = MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(m.subject(), Some(zh.subject.as_str()));
        assert!(String::from_utf8_lossy(&bytes).contains("List-Unsubscribe-Post"));
    }

    #[test]
    fn sample_merge_attaches_each_statement() {
        use mail_parser::{MessageParser, MimeHeaders};
        let drafts = render_sample("merge");
        assert_eq!(drafts.len(), 4);
        assert_eq!(drafts[0].attachments[0].name, "statement-1001.pdf");
        assert_eq!(drafts[0].cc[0].addr, "tom.ellis@northwind.example");
        assert!(drafts[1].cc.is_empty());
        let chinese = &drafts[2];
        assert_eq!(
            chinese.attachments[0].name,
            "对账单-东海贸易-2026年10月.pdf"
        );
        let m_bytes = parse_back(chinese);
        let m = MessageParser::new().parse(&m_bytes).unwrap();
        let a = m.attachment(0).unwrap();
        assert_eq!(a.attachment_name(), Some("对账单-东海贸易-2026年10月.pdf"));
        assert!(a.contents().starts_with(b"%PDF-1.4"));
    }

    #[test]
    fn sample_notify_is_text_only() {
        let drafts = render_sample("notify");
        assert_eq!(drafts.len(), 3);
        assert!(drafts
            .iter()
            .all(|d| d.html.is_none() && d.attachments.is_empty()));
        assert_eq!(drafts[0].subject, "[mailshot] FAILED: nightly #412");
        assert!(drafts[0].text.as_deref().unwrap().contains("/builds/412\n"));
    }
}
