//! JSON written by hand for the record the request path makes for nearly every request — an
//! `access` record — and for the outcome the writer folds into it.
//!
//! Why: serde_json escapes every string, field names included, a byte at a time through a
//! table, and for an access record that was most of what serialising cost the request
//! thread (callgrind, 2026-12-05: ≈ 5,600 instructions per record, of which ≈ 5,100 in its
//! string escaping). Here field names are constants written whole, a value that needs no
//! escape (nearly all: identifiers, hosts, paths, addresses) is copied after one scan, and
//! anything else goes through serde_json itself. The bytes are exactly serde_json's (a
//! property test holds this), so the chain, `verify` and every reader see no difference.

/// `,"name":` — the text before a field's value, made at compile time (`name` must need no
/// escape: Sekisho's field names are Rust identifiers).
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}
pub(crate) use key;

/// The fields of an object whose `{` and first field are already in `out`, each written
/// after a [`key!`]; [`Fields::close`] writes the `}`.
pub(crate) struct Fields<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Fields<'a> {
        Fields { out }
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        self.out.extend_from_slice(key.as_bytes());
        string(self.out, value);
    }

    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    pub(crate) fn num(&mut self, key: &str, value: u64) {
        self.out.extend_from_slice(key.as_bytes());
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub(crate) fn opt_num(&mut self, key: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.num(key, v);
        }
    }

    /// A field whose value `write` puts into the buffer as JSON.
    pub(crate) fn with(&mut self, key: &str, write: impl FnOnce(&mut Vec<u8>)) {
        self.out.extend_from_slice(key.as_bytes());
        write(self.out);
    }

    pub(crate) fn close(self) {
        self.out.push(b'}');
    }
}

/// `value` as a JSON string, as serde_json writes it: serde_json escapes `"`, `\` and the
/// control characters below U+0020, nothing else.
pub(crate) fn string(out: &mut Vec<u8>, value: &str) {
    if needs_escape(value.as_bytes()) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
        return;
    }
    out.reserve(value.len() + 2);
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}

/// Whether any byte is `"`, `\` or below 0x20: eight bytes at a time (a byte-at-a-time
/// scan cost four instructions a byte). For each word, `has_below(x, n)` is non-zero exactly
/// when some byte of `x` is below `n` (n ≤ 0x80), and a byte equal to `c` is a zero byte of
/// `x ^ c…c`.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    fn has_below(x: u64, n: u8) -> u64 {
        x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH
    }
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_ne_bytes(w.try_into().unwrap_or([0; 8]));
        if has_below(x, 0x20) | has_below(x ^ (ONES * 0x22), 1) | has_below(x ^ (ONES * 0x5c), 1)
            != 0
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_byte_that_needs_an_escape_is_found_wherever_it_is() {
        for b in 0u8..=0x7f {
            let want = b < 0x20 || b == b'"' || b == b'\\';
            for at in 0..17 {
                let mut v = vec![b'a'; 17];
                v[at] = b;
                assert_eq!(needs_escape(&v), want, "byte {b:#x} at {at}");
            }
        }
        // Non-ASCII text never needs one (its bytes are all 0x80 and above).
        assert!(!needs_escape("ポリシーにより許可されました".as_bytes()));
    }

    proptest! {
        /// Any string, control characters, quotes, backslashes and non-ASCII text included,
        /// is written exactly as serde_json writes it.
        #[test]
        fn a_string_is_written_as_serde_json_writes_it(s in any::<String>(), t in "[ -~\u{0}-\u{1f}\u{7f}あ-ん]{0,40}") {
            for v in [&s, &t] {
                let mut out = Vec::new();
                string(&mut out, v);
                prop_assert_eq!(out, serde_json::to_vec(v).unwrap());
            }
        }
    }
}
