//! An error-collecting decoder over the spanned tree.
//!
//! Every accessor returns `Option`: `None` means "a problem was recorded; carry on with the
//! next field". The caller decides at the end, from `has_errors`, whether the whole
//! document is usable.

use std::time::Duration;

use crate::diag::{Diagnostic, Severity};
use crate::node::{Kind, Node, Path};

/// Collects diagnostics while typed values are pulled out of a [`Node`] tree.
#[derive(Debug)]
pub struct Decoder {
    file: String,
    diags: Vec<Diagnostic>,
}

/// A checked view of a mapping: unknown keys were already reported.
#[derive(Clone, Copy, Debug)]
pub struct MapView<'n> {
    node: &'n Node,
    entries: &'n [(Node, Node)],
    path: &'n Path,
}

impl Decoder {
    pub fn new(file: &str) -> Decoder {
        Decoder {
            file: file.to_owned(),
            diags: Vec::new(),
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    fn push(
        &mut self,
        severity: Severity,
        at: &Node,
        path: &Path,
        message: String,
        hint: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            severity,
            file: self.file.clone(),
            line: at.line,
            column: at.column,
            path: path.to_string(),
            message,
            hint,
        });
    }

    pub fn error(
        &mut self,
        at: &Node,
        path: &Path,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(Severity::Error, at, path, message.into(), hint);
    }

    pub fn warning(
        &mut self,
        at: &Node,
        path: &Path,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(Severity::Warning, at, path, message.into(), hint);
    }

    /// Adds a diagnostic made elsewhere (for example by a check across files).
    pub fn push_diagnostic(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }

    pub fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.diags
    }

    fn type_error(&mut self, node: &Node, path: &Path, expected: &str) {
        self.error(
            node,
            path,
            format!("expected {expected}, found {}", node.type_name()),
            None,
        );
    }

    /// Opens a mapping and reports every key not in `allowed`, with a did-you-mean hint.
    pub fn map<'n>(
        &mut self,
        node: &'n Node,
        path: &'n Path,
        allowed: &[&str],
    ) -> Option<MapView<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.type_error(node, path, "a mapping (`key: value` lines)");
            return None;
        };
        for (key, _) in entries {
            match key.as_str() {
                Some(k) if allowed.contains(&k) => {}
                Some(k) => {
                    let hint = match did_you_mean(k, allowed) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("allowed keys here: {}", allowed.join(", ")),
                    };
                    self.error(key, &path.key(k), format!("unknown key `{k}`"), Some(hint));
                }
                None => self.error(key, path, "keys must be strings", None),
            }
        }
        Some(MapView {
            node,
            entries,
            path,
        })
    }

    /// Opens a mapping whose keys are names chosen by the user (policy names, route names),
    /// returning `(name, key node, value node)` triples.
    pub fn named_entries<'n>(
        &mut self,
        node: &'n Node,
        path: &Path,
    ) -> Option<Vec<(&'n str, &'n Node, &'n Node)>> {
        let Kind::Map(entries) = &node.kind else {
            self.type_error(node, path, "a mapping of names to entries");
            return None;
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            match k.as_str() {
                Some(name) => out.push((name, k, v)),
                None => self.error(k, path, "names must be strings", None),
            }
        }
        Some(out)
    }

    pub fn string(&mut self, node: &Node, path: &Path) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => Some(s.clone()),
            // Plain scalars such as `8080` or `1.0` are read as numbers by YAML; where the
            // schema wants text we accept them, as a person would expect.
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            _ => {
                self.type_error(node, path, "a string");
                None
            }
        }
    }

    /// A string that must not be empty.
    pub fn nonempty_string(&mut self, node: &Node, path: &Path) -> Option<String> {
        let s = self.string(node, path)?;
        if s.trim().is_empty() {
            self.error(node, path, "must not be empty", None);
            return None;
        }
        Some(s)
    }

    pub fn boolean(&mut self, node: &Node, path: &Path) -> Option<bool> {
        match &node.kind {
            Kind::Bool(b) => Some(*b),
            Kind::Str(s) if matches!(s.as_str(), "yes" | "no" | "on" | "off") => {
                self.error(
                    node,
                    path,
                    format!("`{s}` is not a boolean here"),
                    Some("write `true` or `false`".into()),
                );
                None
            }
            _ => {
                self.type_error(node, path, "`true` or `false`");
                None
            }
        }
    }

    pub fn uint(&mut self, node: &Node, path: &Path) -> Option<u64> {
        match &node.kind {
            Kind::Int(i) if *i >= 0 => Some(*i as u64),
            Kind::Int(_) => {
                self.error(node, path, "must not be negative", None);
                None
            }
            _ => {
                self.type_error(node, path, "a whole number");
                None
            }
        }
    }

    /// A duration such as `15m`, `7d`, `90s`, `1h 30m` or `250ms`.
    pub fn duration(&mut self, node: &Node, path: &Path) -> Option<Duration> {
        let text = match &node.kind {
            Kind::Str(s) => s.clone(),
            Kind::Int(_) => {
                self.error(
                    node,
                    path,
                    "a duration needs a unit",
                    Some("for example `30s`, `15m`, `8h` or `7d`".into()),
                );
                return None;
            }
            _ => {
                self.type_error(node, path, "a duration such as `30s` or `15m`");
                return None;
            }
        };
        match humantime::parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    node,
                    path,
                    format!("`{text}` is not a duration: {e}"),
                    Some("for example `30s`, `15m`, `8h` or `7d`".into()),
                );
                None
            }
        }
    }

    pub fn seq<'n>(&mut self, node: &'n Node, path: &Path) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) => Some(items),
            _ => {
                self.type_error(node, path, "a list (`- item` lines or `[a, b]`)");
                None
            }
        }
    }

    /// A list of strings; a single scalar is accepted as a list of one.
    pub fn string_list(&mut self, node: &Node, path: &Path) -> Option<Vec<String>> {
        match &node.kind {
            Kind::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.string(item, &path.index(i)) {
                        Some(s) => out.push(s),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            _ => self.string(node, path).map(|s| vec![s]),
        }
    }

    /// A string that must be one of `options`, with a did-you-mean hint otherwise.
    pub fn one_of(&mut self, node: &Node, path: &Path, options: &[&str]) -> Option<String> {
        let s = self.string(node, path)?;
        if options.contains(&s.as_str()) {
            return Some(s);
        }
        let hint = match did_you_mean(&s, options) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!("one of: {}", options.join(", ")),
        };
        self.error(node, path, format!("`{s}` is not allowed here"), Some(hint));
        None
    }
}

impl<'n> MapView<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A key that must be present; its absence is reported at the mapping.
    pub fn require(&self, d: &mut Decoder, key: &str) -> Option<&'n Node> {
        let found = self.get(key);
        if found.is_none() {
            d.error(
                self.node,
                self.path,
                format!("missing required key `{key}`"),
                None,
            );
        }
        found
    }

    pub fn entries(&self) -> impl Iterator<Item = (&'n str, &'n Node, &'n Node)> + 'n {
        self.entries
            .iter()
            .filter_map(|(k, v)| k.as_str().map(|s| (s, k, v)))
    }

    pub fn node(&self) -> &'n Node {
        self.node
    }

    pub fn path(&self) -> &'n Path {
        self.path
    }
}

/// The closest option to `input`, if it is close enough to be a likely typo.
pub fn did_you_mean(input: &str, options: &[&str]) -> Option<String> {
    let lower = input.to_lowercase();
    options
        .iter()
        .map(|o| (strsim::jaro_winkler(&lower, &o.to_lowercase()), *o))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, o)| o.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::parse;

    #[test]
    fn all_unknown_keys_are_reported_in_one_pass() {
        let text = "listners: []\nroutes: []\nzoness: {}\n";
        let n = parse("c.yaml", text).unwrap();
        let mut d = Decoder::new("c.yaml");
        let root = Path::root();
        d.map(&n, &root, &["listeners", "routes", "zones"]).unwrap();
        let diags = d.into_diagnostics();
        assert_eq!(diags.len(), 2);
        assert_eq!(diags[0].line, 1);
        assert_eq!(diags[0].hint.as_deref(), Some("did you mean `listeners`?"));
        assert_eq!(diags[1].line, 3);
        assert_eq!(diags[1].hint.as_deref(), Some("did you mean `zones`?"));
        assert_eq!(
            diags[0].to_string(),
            "error: c.yaml:1:1: listners: unknown key `listners`\n  hint: did you mean `listeners`?"
        );
    }

    #[test]
    fn type_errors_carry_the_value_position_and_path() {
        let n = parse("c.yaml", "timeouts:\n  connect: 5\n  enabled: yes\n").unwrap();
        let mut d = Decoder::new("c.yaml");
        let root = Path::root();
        let t = n.get("timeouts").unwrap();
        let p = root.key("timeouts");
        assert!(
            d.duration(t.get("connect").unwrap(), &p.key("connect"))
                .is_none()
        );
        assert!(
            d.boolean(t.get("enabled").unwrap(), &p.key("enabled"))
                .is_none()
        );
        let diags = d.into_diagnostics();
        assert_eq!(diags.len(), 2);
        assert_eq!((diags[0].line, diags[0].column), (2, 12));
        assert_eq!(diags[0].path, "timeouts.connect");
        assert!(diags[0].hint.as_deref().unwrap().contains("30s"));
        assert_eq!(diags[1].path, "timeouts.enabled");
    }

    #[test]
    fn durations_and_lists() {
        let n = parse("c.yaml", "a: 15m\nb: [x, y]\nc: z\n").unwrap();
        let mut d = Decoder::new("c.yaml");
        let r = Path::root();
        assert_eq!(
            d.duration(n.get("a").unwrap(), &r),
            Some(Duration::from_secs(900))
        );
        assert_eq!(
            d.string_list(n.get("b").unwrap(), &r),
            Some(vec!["x".into(), "y".into()])
        );
        assert_eq!(
            d.string_list(n.get("c").unwrap(), &r),
            Some(vec!["z".into()])
        );
        assert!(!d.has_errors());
    }

    #[test]
    fn one_of_suggests() {
        let n = parse("c.yaml", "zone: lgwn\n").unwrap();
        let mut d = Decoder::new("c.yaml");
        assert!(
            d.one_of(
                n.get("zone").unwrap(),
                &Path::root().key("zone"),
                &["lgwan", "internet"]
            )
            .is_none()
        );
        let diags = d.into_diagnostics();
        assert_eq!(diags[0].hint.as_deref(), Some("did you mean `lgwan`?"));
    }

    #[test]
    fn missing_required_key_is_reported_at_the_mapping() {
        let n = parse("c.yaml", "route:\n  host: a\n").unwrap();
        let mut d = Decoder::new("c.yaml");
        let p = Path::root().key("route");
        let m = d
            .map(n.get("route").unwrap(), &p, &["host", "upstreams"])
            .unwrap();
        assert!(m.require(&mut d, "upstreams").is_none());
        let diags = d.into_diagnostics();
        assert_eq!(diags[0].message, "missing required key `upstreams`");
        assert_eq!(diags[0].line, 2);
    }
}
