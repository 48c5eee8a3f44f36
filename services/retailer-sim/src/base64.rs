//! A base64 decoder (RFC 4648), for the two places the simulator must read base64: a JWT's
//! segments (URL-safe alphabet, no padding) and RFC 2047 encoded words in a mail's `Subject`
//! (standard alphabet, padded). Decoding only, and small enough that a crate is not worth its
//! weight in the tree.

/// Which 64 characters stand for 0..=63 (the first 62 are shared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// `+` and `/`: MIME, RFC 2047.
    Standard,
    /// `-` and `_`: JWS/JWT (RFC 7515 §2, "base64url").
    UrlSafe,
}

impl Alphabet {
    fn value(self, c: u8) -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' if self == Alphabet::Standard => 62,
            b'/' if self == Alphabet::Standard => 63,
            b'-' if self == Alphabet::UrlSafe => 62,
            b'_' if self == Alphabet::UrlSafe => 63,
            _ => return None,
        };
        Some(u32::from(v))
    }
}

/// Decodes `input`; padding is optional (JWTs leave it out, MIME puts it in), but nothing may
/// follow it, and a final group of one character (which cannot encode a byte) is refused.
pub fn decode(input: &str, alphabet: Alphabet) -> Result<Vec<u8>, String> {
    let data = input.trim_end_matches('=');
    if input.len() - data.len() > 2 {
        return Err("too much padding".to_owned());
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in data.bytes() {
        let v = alphabet
            .value(c)
            .ok_or_else(|| format!("{:?} is not a base64 character", char::from(c)))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Truncation intended: the byte is the top 8 of the bits collected.
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if data.len() % 4 == 1 {
        return Err("truncated base64".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_alphabets_with_and_without_padding() {
        assert_eq!(decode("", Alphabet::Standard).unwrap(), b"");
        assert_eq!(decode("Zg==", Alphabet::Standard).unwrap(), b"f");
        assert_eq!(decode("Zm8", Alphabet::Standard).unwrap(), b"fo");
        assert_eq!(decode("Zm9vYmFy", Alphabet::Standard).unwrap(), b"foobar");
        assert_eq!(decode("w6k=", Alphabet::Standard).unwrap(), "é".as_bytes());
        assert_eq!(decode("-_8", Alphabet::UrlSafe).unwrap(), [0xfb, 0xff]);
        assert_eq!(decode("+/8=", Alphabet::Standard).unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn refuses_what_is_not_base64() {
        assert!(decode("+/8", Alphabet::UrlSafe).is_err());
        assert!(decode("-_8", Alphabet::Standard).is_err());
        assert!(decode("Zg=a", Alphabet::Standard).is_err());
        assert!(decode("Z", Alphabet::Standard).is_err());
        assert!(decode("Zg===", Alphabet::Standard).is_err());
    }
}
