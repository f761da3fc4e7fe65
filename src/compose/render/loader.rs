//! Where `{% extends %}`, `{% include %}` and `{% import %}` names are
//! found: a fixed, small set of roots (the job folder, and the `templates/`
//! folder inside it, one level above it and two levels above it), each opened
//! as a [`cap_std::fs::Dir`] so a name, a `..` or a symlink cannot lead out
//! of it. Absolute names and names with `..` are refused outright.

use std::path::{Path, PathBuf};

use minijinja::ErrorKind;

/// A folder templates are loaded from, opened as a capability.
pub(super) struct TemplateRoot {
    path: PathBuf,
    dir: cap_std::fs::Dir,
    /// The job folder itself (the others are `templates/` folders).
    job: bool,
}

/// The template roots of a job: the job folder, then the `templates/`
/// folder in it, one level above it and two levels above it (those that
/// exist).
pub(super) fn template_roots(job_dir: &Path) -> Vec<TemplateRoot> {
    let mut candidates = vec![(job_dir.to_path_buf(), true)];
    let above = [
        Some(job_dir),
        job_dir.parent(),
        job_dir.parent().and_then(Path::parent),
    ];
    for base in above.into_iter().flatten() {
        candidates.push((base.join("templates"), false));
    }
    let mut roots: Vec<TemplateRoot> = Vec::new();
    for (path, job) in candidates {
        if roots.iter().any(|r| r.path == path) {
            continue;
        }
        if let Ok(dir) = cap_std::fs::Dir::open_ambient_dir(&path, cap_std::ambient_authority()) {
            roots.push(TemplateRoot { path, dir, job });
        }
    }
    roots
}

/// Find template `name` in the roots: its file and source, `None` if no
/// root has it. Absolute names and `..` are refused.
pub(super) fn resolve_template(
    roots: &[TemplateRoot],
    name: &str,
) -> std::result::Result<Option<(PathBuf, String)>, minijinja::Error> {
    use std::io::Read as _;
    use std::path::Component;
    let refuse = |why: String| Err(minijinja::Error::new(ErrorKind::InvalidOperation, why));
    let rel = Path::new(name);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return refuse(format!(
            "template name \"{name}\" is refused: names are relative to the job folder or a \
             templates/ folder, without `..` and not absolute"
        ));
    }
    for root in roots {
        let mut tries = vec![rel];
        if !root.job {
            if let Ok(stripped) = rel.strip_prefix("templates") {
                tries.push(stripped);
            }
        }
        for candidate in tries {
            let mut file = match root.dir.open(candidate) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::PermissionDenied
                        && e.to_string().contains("outside") =>
                {
                    return refuse(format!(
                        "template \"{name}\" is refused: it leads outside {} (a symlink?)",
                        root.path.display()
                    ));
                }
                Err(e) => {
                    return refuse(format!(
                        "cannot read template \"{name}\" in {}: {e}",
                        root.path.display()
                    ))
                }
            };
            if !file.metadata().is_ok_and(|m| m.is_file()) {
                continue;
            }
            let mut source = String::new();
            file.read_to_string(&mut source).map_err(|e| {
                minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "cannot read template \"{name}\" in {}: {e}",
                        root.path.display()
                    ),
                )
            })?;
            return Ok(Some((root.path.join(candidate), source)));
        }
    }
    Ok(None)
}
