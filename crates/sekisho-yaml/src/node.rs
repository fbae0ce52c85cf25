//! The spanned YAML tree.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diag::{Diagnostic, Severity};

/// A YAML node and where it starts in the file (1-based line and column).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub line: u64,
    pub column: u64,
}

/// The value of a node. Mappings keep their keys in file order; duplicate keys never
/// reach this type (the parser rejects them).
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short English name of the node's type, for messages ("expected a list, found a string").
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The node as a string, when it is a scalar a person would read as text.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Looks a key up in a mapping node (no diagnostics; see `Decoder::map` for checked access).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Deserialize::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        i64::try_from(v)
            .map(Kind::Int)
            .map_err(|_| E::custom("integer is too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Kind::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Kind>::deserialize(d)?;
        Ok(Node {
            kind: spanned.value,
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
        })
    }
}

/// Parses YAML text into a spanned tree.
///
/// Syntax errors, duplicate keys and excessive alias expansion are reported as a single
/// diagnostic with the parser's position; an empty document is a `Null` node.
pub fn parse(file: &str, text: &str) -> Result<Node, Diagnostic> {
    if text.trim().is_empty() {
        return Ok(Node {
            kind: Kind::Null,
            line: 1,
            column: 1,
        });
    }
    // YAML 1.2 core booleans only: `no`, `on`, `y` stay strings (the "Norway problem"),
    // and `0800` stays text instead of becoming an octal or decimal number.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let (message, hint) = describe_parse_error(&err);
        Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            line,
            column,
            path: String::new(),
            message,
            hint,
        }
    })
}

fn describe_parse_error(err: &serde_saphyr::Error) -> (String, Option<String>) {
    if let serde_saphyr::Error::DuplicateMappingKey { key, .. } = err.without_snippet() {
        let name = key.as_deref().unwrap_or("?");
        return (
            format!("duplicate key `{name}`"),
            Some(
                "a key may appear only once in a mapping; a second copy would silently replace \
                 the first, so merge the two entries"
                    .into(),
            ),
        );
    }
    // The parser's own message, without its source snippet (we print our own position).
    let text = err.without_snippet().to_string();
    let first = text
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_owned();
    (
        format!("invalid YAML: {first}"),
        Some("check indentation (spaces, not tabs) and that every `key: value` has a space after the colon".into()),
    )
}

/// A key path such as `routes.portal.upstreams[0]`, for messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn root() -> Path {
        Path(String::new())
    }
    /// The path of a mapping entry below this one.
    pub fn key(&self, key: &str) -> Path {
        if self.0.is_empty() {
            Path(key.to_owned())
        } else {
            Path(format!("{}.{key}", self.0))
        }
    }
    /// The path of a list item below this one.
    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_kept_for_nested_nodes() {
        let text = "a:\n  b: [1, two]\n  c:\n    - x: true\n";
        let n = parse("t.yaml", text).unwrap();
        let a = n.get("a").unwrap();
        assert_eq!((a.line, a.column), (2, 3));
        let b = a.get("b").unwrap();
        let Kind::Seq(items) = &b.kind else { panic!() };
        assert_eq!(items[0].kind, Kind::Int(1));
        assert_eq!(items[1].kind, Kind::Str("two".into()));
        assert_eq!((items[1].line, items[1].column), (2, 10));
        let c = a.get("c").unwrap();
        let Kind::Seq(items) = &c.kind else { panic!() };
        let x = items[0].get("x").unwrap();
        assert_eq!(x.kind, Kind::Bool(true));
        assert_eq!(x.line, 4);
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_position() {
        let text = "policies:\n  a: 1\n  b: 2\n  a: 3\n";
        let d = parse("p.yaml", text).unwrap_err();
        assert!(d.message.contains("duplicate key `a`"), "{d}");
        assert_eq!(d.line, 4);
        assert_eq!(d.file, "p.yaml");
    }

    #[test]
    fn syntax_errors_name_a_position() {
        let d = parse("bad.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(d.line > 0, "{d}");
        assert!(d.message.starts_with("invalid YAML"), "{d}");
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("e.yaml", "  \n").unwrap().kind, Kind::Null);
    }

    #[test]
    fn norway_is_a_string() {
        // YAML 1.2 core schema: `no` is not a boolean. Country codes and answers stay text.
        let n = parse("t.yaml", "c: no\n").unwrap();
        assert_eq!(n.get("c").unwrap().kind, Kind::Str("no".into()));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = parse("fuzz.yaml", &s);
        }
    }
}
