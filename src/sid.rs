//! Session and socket ids: 20 characters of URL-safe base64 over 15 random
//! bytes, stored inline so that maps keyed by id never allocate for the key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A 20-character id, as used for Engine.IO sessions and Socket.IO sockets.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid([u8; 20]);

impl Sid {
    /// A fresh random id.
    pub fn new() -> Sid {
        let mut raw = [0u8; 15];
        rand::fill(&mut raw);
        let mut out = [0u8; 20];
        // 15 bytes always encode to exactly 20 characters without padding.
        let _ = URL_SAFE_NO_PAD.encode_slice(raw, &mut out);
        Sid(out)
    }

    /// Reads an id from text; `None` unless it has the shape of one.
    pub fn parse(text: &str) -> Option<Sid> {
        let bytes = text.as_bytes();
        if bytes.len() != 20 || !bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_') {
            return None;
        }
        let mut out = [0u8; 20];
        out.copy_from_slice(bytes);
        Some(Sid(out))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Built only from base64url characters (ASCII) in `new` or `parse`.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl Default for Sid {
    fn default() -> Self {
        Sid::new()
    }
}

impl std::fmt::Display for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twenty_url_safe_characters_and_parse_back() {
        let a = Sid::new();
        let b = Sid::new();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 20);
        assert_eq!(Sid::parse(a.as_str()), Some(a));
        assert_eq!(Sid::parse("short"), None);
        assert_eq!(Sid::parse("aaaaaaaaaaaaaaaaaaa/"), None);
    }
}
