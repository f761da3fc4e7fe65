//! Compiling the job's templates: the minijinja environment (strict
//! undefined, fuel, escaping by role), the inline job keys, the job's template
//! files and, before the first row, every file they statically extend,
//! include or import.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};

use super::address_fill::{address_escape, parse_mailbox_list, ADDRESS_ESCAPE, ADDRESS_KEYS};
use super::diagnostics::error_text;
use super::files::Files;
use super::html_images::literal_image_sources;
use super::loader::{resolve_template, template_roots};
use super::markdown::{markdown_escape, MARKDOWN_ESCAPE};
use super::{lookup, Keys, Renderer, BUILTIN_NAMES, TEMPLATE_FUEL};
use crate::error::{Diagnostic, Error, Location, Result};
use crate::job::Job;

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
            ("return_path", &job.return_path),
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
        super::filters::register(&mut env);
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
}

/// Address keys escape interpolated values as addresses, other job keys not
/// at all, the job's own template files by their role, other template files
/// by their extension.
pub(super) fn auto_escape_mode(
    inline: &Keys,
    roles: &[(String, AutoEscape)],
    name: &str,
) -> AutoEscape {
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
