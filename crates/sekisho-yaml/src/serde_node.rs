//! Serde over the spanned tree: sections of a file that belong to another crate's serde
//! types (device trust, audit, identity) are decoded from the same tree, and their errors
//! keep the position of the node where they arose.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use crate::decode::Decoder;
use crate::node::{Kind, Node, Path};

/// A serde error with the position of the node it arose at (0 when unknown yet).
#[derive(Debug)]
pub struct NodeError {
    message: String,
    line: u64,
    column: u64,
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

impl de::Error for NodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NodeError {
            message: msg.to_string(),
            line: 0,
            column: 0,
        }
    }
}

impl NodeError {
    /// Gives the error the position of `node` unless a deeper node already did.
    fn at(mut self, node: &Node) -> Self {
        if self.line == 0 {
            self.line = node.line;
            self.column = node.column;
        }
        self
    }
}

/// Decodes a node into any serde type. On failure the error is recorded (at the deepest
/// node known, under `path`) and `None` returned.
pub fn deserialize<T: DeserializeOwned>(d: &mut Decoder, node: &Node, path: &Path) -> Option<T> {
    match T::deserialize(NodeDeserializer(node)) {
        Ok(v) => Some(v),
        Err(e) => {
            let at = Node {
                kind: Kind::Null,
                line: if e.line > 0 { e.line } else { node.line },
                column: if e.line > 0 { e.column } else { node.column },
            };
            let hint = if e.message.starts_with("unknown field") {
                Some("check the spelling against the documentation of this section".to_owned())
            } else {
                None
            };
            d.error(&at, path, e.message, hint);
            None
        }
    }
}

/// A serde `Deserializer` for one node.
#[derive(Clone, Copy)]
pub struct NodeDeserializer<'a>(pub &'a Node);

impl<'de, 'a> de::Deserializer<'de> for NodeDeserializer<'a> {
    type Error = NodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        let node = self.0;
        let r = match &node.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
            }),
            Kind::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
        };
        r.map_err(|e| e.at(node))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.0.kind {
            Kind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        // Plain scalars such as `8080` are numbers to YAML but text to a string field.
        match &self.0.kind {
            Kind::Int(i) => visitor.visit_string(i.to_string()),
            Kind::Float(f) => visitor.visit_string(f.to_string()),
            _ => self.deserialize_any(visitor),
        }
        .map_err(|e| e.at(self.0))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        let node = self.0;
        let r = match &node.kind {
            Kind::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Kind::Map(entries) if entries.len() == 1 => visitor.visit_enum(EnumAccess {
                key: &entries[0].0,
                value: &entries[0].1,
            }),
            _ => Err(de::Error::custom(format!(
                "expected a name or a one-key mapping, found {}",
                node.type_name()
            ))),
        };
        r.map_err(|e| e.at(node))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de, 'a> de::SeqAccess<'de> for SeqAccess<'a> {
    type Error = NodeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        match self.items.next() {
            Some(n) => seed
                .deserialize(NodeDeserializer(n))
                .map(Some)
                .map_err(|e| e.at(n)),
            None => Ok(None),
        }
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de, 'a> de::MapAccess<'de> for MapAccess<'a> {
    type Error = NodeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NodeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDeserializer(k))
                    .map(Some)
                    .map_err(|e| e.at(k))
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, NodeError> {
        let v = self
            .value
            .take()
            .ok_or_else(|| <NodeError as de::Error>::custom("value without key"))?;
        seed.deserialize(NodeDeserializer(v)).map_err(|e| e.at(v))
    }
}

struct EnumAccess<'a> {
    key: &'a Node,
    value: &'a Node,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAccess<'a> {
    type Error = NodeError;
    type Variant = NodeDeserializer<'a>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), NodeError> {
        let v = seed
            .deserialize(NodeDeserializer(self.key))
            .map_err(|e| e.at(self.key))?;
        Ok((v, NodeDeserializer(self.value)))
    }
}

impl<'de, 'a> de::VariantAccess<'de> for NodeDeserializer<'a> {
    type Error = NodeError;
    fn unit_variant(self) -> Result<(), NodeError> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, NodeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::parse;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        name: String,
        #[serde(default)]
        tags: Vec<String>,
        mode: Mode,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Strict,
        Batched { max: u32 },
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        port: Option<u16>,
        inner: Inner,
    }

    #[test]
    fn decodes_and_locates_errors() {
        let n = parse(
            "t.yaml",
            "port: 8080\ninner:\n  name: 1234\n  mode: strict\n",
        )
        .unwrap();
        let mut d = Decoder::new("t.yaml");
        let v: Outer = deserialize(&mut d, &n, &Path::root()).unwrap();
        assert_eq!(v.inner.name, "1234");
        assert_eq!(v.inner.mode, Mode::Strict);

        let n = parse(
            "t.yaml",
            "inner:\n  name: a\n  mode: { batched: { max: 3 } }\n",
        )
        .unwrap();
        let v: Outer = deserialize(&mut d, &n, &Path::root()).unwrap();
        assert_eq!(v.inner.mode, Mode::Batched { max: 3 });
        assert!(!d.has_errors());

        let n = parse("t.yaml", "inner:\n  name: a\n  mode: strict\n  tgs: [x]\n").unwrap();
        assert!(deserialize::<Outer>(&mut d, &n, &Path::root().key("audit")).is_none());
        let diags = d.into_diagnostics();
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].line, 4, "{}", diags[0]);
        assert!(
            diags[0].message.contains("unknown field `tgs`"),
            "{}",
            diags[0]
        );

        let mut d = Decoder::new("t.yaml");
        let n = parse("t.yaml", "port: 99999\ninner: { name: a, mode: strict }\n").unwrap();
        assert!(deserialize::<Outer>(&mut d, &n, &Path::root()).is_none());
        assert_eq!(d.into_diagnostics()[0].line, 1);
    }
}
