//! All known workflow templates, keyed by namespace, name and version.

use super::manifest::{is_manifest, Manifest};
use super::{CatalogError, Template, WorkflowError};
use semver::Version;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The workflows shipped in the repository's `workflows/` folder, compiled into the binary so
/// that `taskdeck` works from any directory (see build.rs).
mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled_workflows.rs"));
}

/// A template ready to instantiate: parsed, validated, with its input schema compiled.
#[derive(Debug)]
pub struct Workflow {
    pub template: Template,
    validator: Option<jsonschema::Validator>,
}

impl Workflow {
    fn new(template: Template) -> Self {
        // The schema was compiled once during validation, so this cannot fail here.
        let validator = template
            .input_schema
            .as_ref()
            .and_then(|s| jsonschema::validator_for(s).ok());
        Workflow { template, validator }
    }

    /// Checks a task context against the input schema; lists every violation with its path.
    pub fn validate_context(&self, context: &Value) -> Result<(), CatalogError> {
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        let violations: Vec<String> = validator
            .iter_errors(context)
            .map(|e| {
                let mut path = json_path(e.instance_path().as_str());
                if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind() {
                    if let Some(p) = property.as_str() {
                        path.push('.');
                        path.push_str(p);
                        return format!("{path}: required field is missing");
                    }
                }
                format!("{path}: {e}")
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(CatalogError::InvalidContext {
                workflow: self.template.reference(),
                violations,
            })
        }
    }
}

/// `/cart_items/0/price` → `$.cart_items[0].price`.
pub(super) fn json_path(pointer: &str) -> String {
    let mut out = String::from("$");
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            out.push('.');
            out.push_str(&seg);
        }
    }
    out
}

/// Where workflow files come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The files compiled into the binary.
    Bundled,
    /// A file, or a folder searched recursively for `*.yaml` / `*.yml`.
    Path(PathBuf),
    /// A document held in memory, with the file name to use in messages (tests, tools).
    Inline { file: String, text: String },
    /// A permission policy file of any name (`--policy`), which replaces the bundled one.
    Policy(PathBuf),
}

#[derive(Debug, Default)]
pub struct Catalog {
    workflows: BTreeMap<(String, String), BTreeMap<Version, Arc<Workflow>>>,
    manifests: BTreeMap<String, Manifest>,
    /// Every file loaded, as (name, text): a client of a remote engine loads the same catalog
    /// from them (`GET /v1/workflows/files`).
    files: Vec<(String, String)>,
    /// The permission policy (`auth::policy`): a `policy.yaml` loaded here, else the bundled one.
    policy: Option<Arc<crate::auth::Policy>>,
}

impl Catalog {
    /// Loads and validates every file of every source. Fails with all problems found,
    /// including the same namespace/name/version defined in two files.
    pub fn load(
        sources: &[Source],
        is_handler: &dyn Fn(&str) -> bool,
    ) -> Result<Catalog, Vec<WorkflowError>> {
        let mut errors = Vec::new();
        let mut files: Vec<(String, String)> = Vec::new();
        let mut bundled_files: std::collections::HashSet<usize> = std::collections::HashSet::new();
        let mut forced_policies: std::collections::HashSet<usize> = std::collections::HashSet::new();
        for source in sources {
            match source {
                Source::Bundled => {
                    let from = files.len();
                    files.extend(bundled::FILES.iter().map(|(p, t)| (p.to_string(), t.to_string())));
                    bundled_files.extend(from..files.len());
                }
                Source::Path(path) => read_files(path, &mut files, &mut errors),
                Source::Inline { file, text } => files.push((file.clone(), text.clone())),
                Source::Policy(path) => match crate::fsutil::read_named(path, MAX_FILE_BYTES) {
                    Ok(bytes) => {
                        forced_policies.insert(files.len());
                        // Named so that a client loading the catalog from these files knows it too.
                        files.push((
                            format!("{} {}", path.display(), crate::auth::policy::FORCED),
                            String::from_utf8_lossy(&bytes).into_owned(),
                        ));
                    }
                    Err(e) => errors.push(WorkflowError::new(
                        &path.display().to_string(),
                        None,
                        format!("cannot read the policy: {e}"),
                    )),
                },
            }
        }
        let mut catalog = Catalog::default();
        let mut policies: Vec<(&str, &str, bool)> = Vec::new();
        for (index, (file, text)) in files.iter().enumerate() {
            let (file, text) = (file.as_str(), text.as_str());
            if crate::auth::policy::is_policy(file) || forced_policies.contains(&index) {
                policies.push((file, text, bundled_files.contains(&index)));
                continue;
            }
            if is_manifest(file) {
                match Manifest::parse(file, text) {
                    Ok(m) => {
                        if let Some(existing) = catalog.manifests.get(&m.namespace) {
                            errors.push(WorkflowError::new(
                                file,
                                None,
                                format!(
                                    "namespace `{}` has a manifest already, in {}",
                                    m.namespace, existing.source
                                ),
                            ));
                        } else {
                            catalog.manifests.insert(m.namespace.clone(), m);
                        }
                    }
                    Err(mut e) => errors.append(&mut e),
                }
                continue;
            }
            match Template::parse(file, text, is_handler) {
                Ok(t) => {
                    let versions = catalog
                        .workflows
                        .entry((t.namespace.clone(), t.name.clone()))
                        .or_default();
                    if let Some(existing) = versions.get(&t.version) {
                        errors.push(WorkflowError::new(
                            file,
                            None,
                            format!(
                                "{} is defined twice: in {} and in {}",
                                t.reference(),
                                existing.template.source,
                                file
                            ),
                        ));
                    } else {
                        versions.insert(t.version.clone(), Arc::new(Workflow::new(t)));
                    }
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        // A grant must name a workflow its namespace has.
        for m in catalog.manifests.values() {
            for (i, g) in m.grants.iter().enumerate() {
                if !catalog
                    .workflows
                    .contains_key(&(m.namespace.clone(), g.workflow.clone()))
                {
                    errors.push(WorkflowError::new(
                        &m.source,
                        Some(format!("grants[{i}].workflow")),
                        format!("namespace `{}` has no workflow `{}`", m.namespace, g.workflow),
                    ));
                }
            }
        }
        // The last policy loaded wins (the bundled one comes first); two of the operator's own
        // would leave which one holds to load order, so that is an error.
        let own: Vec<&str> = policies
            .iter()
            .filter(|(_, _, bundled)| !bundled)
            .map(|(f, _, _)| *f)
            .collect();
        if own.len() > 1 {
            errors.push(WorkflowError::new(
                own[1],
                None,
                format!(
                    "a second permission policy: {} is one already; keep one policy.yaml",
                    own[0]
                ),
            ));
        }
        if let Some((file, text, _)) = policies.last() {
            let known: std::collections::BTreeSet<(String, String)> =
                catalog.workflows.keys().cloned().collect();
            match crate::auth::Policy::parse(file, text, Some(&known)) {
                Ok(p) => catalog.policy = Some(Arc::new(p)),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            catalog.files = files;
            Ok(catalog)
        } else {
            Err(errors)
        }
    }

    /// The files the catalog was loaded from, as (name, YAML text), in load order.
    pub fn files(&self) -> &[(String, String)] {
        &self.files
    }

    /// The permission policy in force.
    pub fn policy(&self) -> &crate::auth::Policy {
        match &self.policy {
            Some(p) => p,
            None => crate::auth::Policy::builtin(),
        }
    }

    /// Every namespace manifest, by namespace.
    pub fn manifests(&self) -> impl Iterator<Item = &Manifest> {
        self.manifests.values()
    }

    /// The manifest of a namespace, if it has one.
    pub fn manifest(&self, namespace: &str) -> Option<&Manifest> {
        self.manifests.get(namespace)
    }

    /// Resolves `NS/NAME` (highest version) or `NS/NAME@VERSION` (exactly that one).
    pub fn resolve(&self, reference: &str) -> Result<Arc<Workflow>, CatalogError> {
        if !well_formed_reference(reference) {
            return Err(CatalogError::BadReference(crate::model::clip(reference, 256)));
        }
        let (path, version) = match reference.split_once('@') {
            Some((p, v)) => (p, Some(v)),
            None => (reference, None),
        };
        let Some((ns, name)) = path.split_once('/') else {
            return Err(CatalogError::BadReference(reference.to_string()));
        };
        let version = match version {
            Some(v) => {
                Some(Version::parse(v).map_err(|_| CatalogError::BadReference(reference.to_string()))?)
            }
            None => None,
        };
        let found =
            self.workflows
                .get(&(ns.to_string(), name.to_string()))
                .and_then(|versions| match &version {
                    Some(v) => versions.get(v).cloned(),
                    None => versions.values().next_back().cloned(),
                });
        found.ok_or_else(|| CatalogError::Unknown {
            reference: reference.to_string(),
            available: {
                let all: Vec<String> = self.iter().map(|w| w.template.reference()).collect();
                if all.is_empty() {
                    "none".into()
                } else {
                    all.join(", ")
                }
            },
        })
    }

    /// Every workflow, ordered by namespace, name and version.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Workflow>> {
        self.workflows.values().flat_map(|v| v.values())
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.workflows.is_empty()
    }
}

/// Whether `text` has the shape of a workflow reference (the API's documented pattern):
/// `NS/NAME` or `NS/NAME@MAJOR.MINOR.PATCH`, names of letters, digits, `_`, `.` and `-`.
pub fn well_formed_reference(text: &str) -> bool {
    let name = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    let number = |s: &str| {
        !s.is_empty()
            && s.len() <= 9
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'))
    };
    let (path, version) = match text.split_once('@') {
        Some((p, v)) => (p, Some(v)),
        None => (text, None),
    };
    let path_ok = path.split_once('/').is_some_and(|(ns, n)| name(ns) && name(n));
    let version_ok = version.is_none_or(|v| {
        let parts: Vec<&str> = v.split('.').collect();
        parts.len() == 3 && parts.iter().all(|p| number(p))
    });
    path_ok && version_ok
}

/// The largest workflow or manifest file read: 1 MiB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads `path` (a file, or a folder searched recursively for `*.yaml`/`*.yml`). Symlinks are
/// followed, but a folder is entered once (a link back up cannot loop), and only regular
/// files are read (a FIFO named `x.yaml` is an error, not a hang).
fn read_files(path: &Path, files: &mut Vec<(String, String)>, errors: &mut Vec<WorkflowError>) {
    let mut seen = std::collections::HashSet::new();
    read_path(path, files, errors, &mut seen);
}

fn read_path(
    path: &Path,
    files: &mut Vec<(String, String)>,
    errors: &mut Vec<WorkflowError>,
    seen: &mut std::collections::HashSet<PathBuf>,
) {
    let label = path.display().to_string();
    let fail = |errors: &mut Vec<WorkflowError>, message: String| {
        errors.push(WorkflowError::new(&label, None, message));
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return fail(errors, format!("cannot read: {e}")),
    };
    if meta.is_dir() {
        let Ok(canonical) = std::fs::canonicalize(path) else {
            return fail(errors, "cannot resolve the folder's path".into());
        };
        if !seen.insert(canonical) {
            return; // a folder already read, reached again through a symlink
        }
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => return fail(errors, format!("cannot read folder: {e}")),
        };
        entries.sort();
        for entry in entries {
            let is_yaml = matches!(entry.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
            if entry.is_dir() || is_yaml {
                read_path(&entry, files, errors, seen);
            }
        }
        return;
    }
    if !meta.is_file() {
        return fail(
            errors,
            "not a regular file (a FIFO, socket or device?); expected a YAML file".into(),
        );
    }
    if meta.len() > MAX_FILE_BYTES {
        return fail(
            errors,
            format!(
                "the file is {} bytes; a workflow file may have at most {MAX_FILE_BYTES}",
                meta.len()
            ),
        );
    }
    let read = std::fs::File::open(path).and_then(|f| {
        use std::io::Read;
        let mut text = String::new();
        f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map(|_| text)
    });
    match read {
        Ok(text) if text.len() as u64 > MAX_FILE_BYTES => fail(
            errors,
            format!("the file grew past {MAX_FILE_BYTES} bytes while it was read"),
        ),
        Ok(text) => files.push((label, text)),
        Err(e) => fail(errors, format!("cannot read file: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_read_like_jsonpath() {
        assert_eq!(json_path(""), "$");
        assert_eq!(json_path("/cart_items/0/price"), "$.cart_items[0].price");
    }
}
