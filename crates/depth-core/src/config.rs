//! The one way the pipeline reads a TOML configuration (data, eval and train configs alike),
//! and the one contract every config type follows ([`ConfigFile::load`]): read the file, apply
//! the `--set key=value` overrides, deserialize (a config type with `deny_unknown_fields` turns
//! a typo into an error that names the key), resolve paths relative to the config file (with
//! `${DEPTH_FIXTURES}` standing for the shared fixtures folder), then validate. Defaults are
//! stated on the fields they belong to.

use crate::error::{CoreError, Result};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A setting that does not agree with the others (or with itself): which key, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct Invalid {
    pub key: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { key: key.into(), reason: reason.into() }
    }

    /// The same problem one table further out (`optim` + `lr` → `optim.lr`).
    pub fn under(self, table: &str) -> Self {
        Self { key: format!("{table}.{}", self.key), reason: self.reason }
    }
}

/// A configuration file type.
pub trait ConfigFile: DeserializeOwned {
    /// Makes the relative paths it holds relative to `base`, the config file's folder.
    fn resolve(&mut self, _base: &Path) -> Result<()> {
        Ok(())
    }

    /// Checks that the settings agree, before anything is opened.
    fn validate(&self) -> std::result::Result<(), Invalid>;

    /// Reads `path` with `overrides` applied, resolves its paths and validates it; every error
    /// names the file. Paths come out absolute (the config's folder is made absolute first), so
    /// a config written back into a run folder means the same files when read from there.
    fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let mut cfg: Self = read_toml(path, overrides)?;
        let base = std::path::absolute(base_dir(path)).map_err(|e| CoreError::io(path, e))?;
        cfg.resolve(&base)?;
        cfg.validate().map_err(|e| CoreError::config(path, e))?;
        Ok(cfg)
    }
}

/// Reads `path` as a `T`, after applying `overrides` (`key.sub=value`: a TOML value, or plain text;
/// a number after a list's name picks one of its tables, `source.0.ratio=2`);
/// nothing is resolved or validated (see [`ConfigFile::load`]).
pub fn read_toml<T: DeserializeOwned>(path: &Path, overrides: &[String]) -> Result<T> {
    let text = crate::read::text(path)?;
    parse_toml(&text, path, overrides)
}

/// As [`read_toml`] on text already read; `path` names it in errors.
pub fn parse_toml<T: DeserializeOwned>(text: &str, path: &Path, overrides: &[String]) -> Result<T> {
    let bad = |reason: String| CoreError::Config { path: path.into(), reason };
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(e.to_string()))?;
    for o in overrides {
        apply_override(&mut table, o).map_err(|e| bad(format!("override `{o}`: {e}")))?;
    }
    if let Some(key) = non_finite("", &toml::Value::Table(table.clone())) {
        return Err(bad(format!("{key}: not a finite number (inf and nan are no setting)")));
    }
    T::deserialize(toml::Value::Table(table)).map_err(|e| bad(e.to_string()))
}

/// The dotted key of the first non-finite number in `value`, if any.
fn non_finite(at: &str, value: &toml::Value) -> Option<String> {
    let join = |k: &str| if at.is_empty() { k.to_string() } else { format!("{at}.{k}") };
    match value {
        toml::Value::Float(f) if !f.is_finite() => Some(at.to_string()),
        toml::Value::Table(t) => t.iter().find_map(|(k, v)| non_finite(&join(k), v)),
        toml::Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| non_finite(&join(&i.to_string()), v)),
        _ => None,
    }
}

/// Sets `key.sub.…=value` in `table`. The value is read as TOML (`3`, `1e-4`, `true`,
/// `[1, 2]`, `"text"`), or taken as a plain string when it is not TOML (`name=student`).
/// Tables on the way are created; a number selects an element of an array of tables
/// (`source.0.ratio=2`).
fn apply_override(table: &mut toml::Table, assignment: &str) -> std::result::Result<(), String> {
    let (key, raw) = assignment.split_once('=').ok_or("expected key=value")?;
    if assignment.chars().any(char::is_control) {
        return Err(
            "an override is one line of text (it holds a newline or another control character)".into()
        );
    }
    let value = match format!("v = {}", raw.trim()).parse::<toml::Table>() {
        Ok(mut t) if t.len() == 1 => t.remove("v").expect("the one key"),
        Ok(_) => return Err(format!("'{}' is more than one value", raw.trim())),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("'{key}' is not a dotted key"));
    }
    let (last, path) = parts.split_last().expect("split yields one part");
    let mut node = table;
    let mut i = 0;
    while i < path.len() {
        let part = path[i];
        let mut entry =
            node.entry(part.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
        if let toml::Value::Array(items) = entry {
            // a number after a list's name selects one of its tables
            let idx: usize = path
                .get(i + 1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("'{part}' is a list: give an index ({part}.0.…)"))?;
            let len = items.len();
            entry = items.get_mut(idx).ok_or_else(|| format!("'{part}' has {len} entries, no {idx}"))?;
            i += 1;
        }
        node = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("'{part}' is not a table")),
        };
        i += 1;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

/// `${DEPTH_FIXTURES}/…` → under the fixtures folder; relative → under `base` (the config's
/// folder); absolute paths stay. A missing fixtures folder is not an error here: the entries
/// that name it are reported as missing when they are opened.
pub fn expand(p: &Path, base: &Path) -> Result<PathBuf> {
    let s = p.to_string_lossy();
    if let Some(rest) = s.strip_prefix("${DEPTH_FIXTURES}") {
        return Ok(crate::fixtures::fixtures_path().0.join(rest.trim_start_matches('/')));
    }
    Ok(normalize(&if p.is_absolute() { p.into() } else { base.join(p) }))
}

/// `a/b/../c/./d` → `a/c/d`, lexically (a `..` that has nothing to remove is kept).
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The folder relative paths of the config at `path` are resolved against.
pub fn base_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// The first name declared twice, as an error message naming `what` (dataset, benchmark, …).
pub fn check_unique<'a>(
    names: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> std::result::Result<(), Invalid> {
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(Invalid::new(what, format!("{what} '{n}' is declared twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Optim {
        lr: f64,
        #[serde(default)]
        betas: Option<(f64, f64)>,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Source {
        name: String,
        ratio: f64,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        name: String,
        optim: Optim,
        #[serde(default)]
        source: Vec<Source>,
    }

    const TEXT: &str = "name = \"a\"\n[optim]\nlr = 1e-4\n[[source]]\nname = \"s\"\nratio = 1.0\n";

    #[test]
    fn overrides_set_numbers_strings_lists_and_array_elements() {
        let p = Path::new("train.toml");
        let sets = ["optim.lr=5e-6", "name=student", "optim.betas=[0.9, 0.99]", "source.0.ratio=3"];
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let c: Cfg = parse_toml(TEXT, p, &sets).unwrap();
        assert_eq!(c.optim, Optim { lr: 5e-6, betas: Some((0.9, 0.99)) });
        assert_eq!(c.name, "student");
        assert_eq!(c.source[0].ratio, 3.0);
    }

    #[test]
    fn a_typo_names_the_file_and_the_key() {
        let err = parse_toml::<Cfg>(&TEXT.replace("lr =", "lr_encoder ="), Path::new("x/train.toml"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("x/train.toml") && err.contains("lr_encoder"), "{err}");
        let err = parse_toml::<Cfg>(TEXT, Path::new("t.toml"), &["optim.lrr=1".into()]).unwrap_err();
        assert!(err.to_string().contains("lrr"), "{err}");
        let err = parse_toml::<Cfg>(TEXT, Path::new("t.toml"), &["source.5.ratio=1".into()]).unwrap_err();
        assert!(err.to_string().contains("has 1 entries"), "{err}");
        let err = parse_toml::<Cfg>(TEXT, Path::new("t.toml"), &["nonsense".into()]).unwrap_err();
        assert!(err.to_string().contains("key=value"), "{err}");
        // no setting is infinite or not a number, in the file or in an override
        for bad in ["optim.lr=inf", "optim.lr=nan", "optim.betas=[0.9, -inf]"] {
            let err = parse_toml::<Cfg>(TEXT, Path::new("t.toml"), &[bad.into()]).unwrap_err().to_string();
            assert!(err.contains("not a finite number") && err.contains("optim."), "{err}");
        }
        let err = parse_toml::<Cfg>(&TEXT.replace("1e-4", "inf"), Path::new("t.toml"), &[]).unwrap_err();
        assert!(err.to_string().contains("optim.lr: not a finite number"), "{err}");
        // what does not parse whole is refused, not cut
        for sneaky in ["optim.lr=1\n[evil]\nx=1", "name=a\rb", "optim.lr=1\tx"] {
            let err = parse_toml::<Cfg>(TEXT, Path::new("t.toml"), &[sneaky.into()]).unwrap_err();
            assert!(err.to_string().contains("one line"), "{err}");
        }
    }

    #[test]
    fn paths_resolve_lexically() {
        assert_eq!(
            expand(Path::new("../../assets/x"), Path::new("configs/mini")).unwrap(),
            PathBuf::from("assets/x")
        );
        assert_eq!(
            expand(Path::new("../../../x"), Path::new("configs/mini")).unwrap(),
            PathBuf::from("../x")
        );
        assert_eq!(expand(Path::new("/abs/./y"), Path::new("base")).unwrap(), PathBuf::from("/abs/y"));
    }

    #[test]
    fn duplicates_are_named() {
        assert_eq!(
            check_unique(["a", "b", "a"], "dataset").unwrap_err().reason,
            "dataset 'a' is declared twice"
        );
        assert!(check_unique(["a", "b"], "dataset").is_ok());
    }
}
