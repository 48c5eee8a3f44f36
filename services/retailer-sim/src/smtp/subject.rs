//! Reads a mail's `Subject` header for the log, so a test can check what a user would see
//! without decoding MIME itself: folded lines are unfolded (RFC 5322 §2.2.3) and UTF-8 encoded
//! words, base64 (`B`) or quoted-printable-like (`Q`), are decoded (RFC 2047). Words in another
//! charset are left as sent: ICON only sends UTF-8.

use crate::base64::{self, Alphabet};

/// The decoded `Subject` of a message (headers, blank line, body), if it has one.
pub fn subject(message: &str) -> Option<String> {
    let mut value: Option<String> = None;
    let mut in_subject = false;
    for line in message.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            break; // End of the header section.
        }
        if line.starts_with([' ', '\t']) {
            if in_subject {
                if let Some(value) = &mut value {
                    value.push_str(line);
                }
            }
            continue;
        }
        in_subject = false;
        if value.is_none() {
            if let Some((name, rest)) = line.split_once(':') {
                if name.trim_end().eq_ignore_ascii_case("subject") {
                    value = Some(rest.to_owned());
                    in_subject = true;
                }
            }
        }
    }
    value.map(|v| decode_words(v.trim()))
}

/// Decodes the encoded words in an unstructured header value. Whitespace between two encoded
/// words is dropped (RFC 2047 §6.2), and adjacent words' bytes are joined before being read as
/// UTF-8, since an encoder may split one character across two words.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut after_word = false;
    let mut rest = value;
    while !rest.is_empty() {
        let token_at = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        let (space, tail) = rest.split_at(token_at);
        let token_len = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let (token, tail) = tail.split_at(token_len);
        rest = tail;
        if token.is_empty() {
            break;
        }
        match encoded_word(token) {
            Some(bytes) => {
                if !after_word {
                    out.push_str(space);
                }
                pending.extend(bytes);
                after_word = true;
            }
            None => {
                out.push_str(&String::from_utf8_lossy(&pending));
                pending.clear();
                out.push_str(space);
                out.push_str(token);
                after_word = false;
            }
        }
    }
    out.push_str(&String::from_utf8_lossy(&pending));
    out
}

/// The bytes of `=?charset?B|Q?text?=` in UTF-8 (or its subset US-ASCII), else `None`.
fn encoded_word(token: &str) -> Option<Vec<u8>> {
    let inner = token.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let (charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
    // RFC 2231 lets a language follow the charset: `UTF-8*en`.
    let charset = charset.split('*').next().unwrap_or_default();
    if !(charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("us-ascii")) {
        return None;
    }
    match encoding {
        "B" | "b" => base64::decode(text, Alphabet::Standard).ok(),
        "Q" | "q" => q_decode(text),
        _ => None,
    }
}

/// RFC 2047's `Q`: `_` is a space, `=XY` a byte in hex, anything else itself.
fn q_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b => out.push(b),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(subject_line: &str) -> String {
        format!("From: a@x.test\r\n{subject_line}\r\nTo: b@y.test\r\n\r\nSubject: not a header\r\n")
    }

    #[test]
    fn plain_and_folded_subjects() {
        assert_eq!(
            subject(&mail("Subject: Order placed")).as_deref(),
            Some("Order placed")
        );
        assert_eq!(
            subject(&mail("subject:  Order\r\n placed")).as_deref(),
            Some("Order placed")
        );
        assert_eq!(subject("From: a@x.test\r\n\r\nSubject: body\r\n"), None);
    }

    #[test]
    fn encoded_words_are_decoded() {
        // "Commande passée ✓" in one B word, in two Q words (split inside "é"), and mixed.
        let b = "Subject: =?UTF-8?B?Q29tbWFuZGUgcGFzc8OpZSDinJM=?=";
        assert_eq!(subject(&mail(b)).as_deref(), Some("Commande passée ✓"));
        let q = "Subject: =?utf-8?Q?Commande_pass=C3?=\r\n =?utf-8?q?=A9e_=E2=9C=93?=";
        assert_eq!(subject(&mail(q)).as_deref(), Some("Commande passée ✓"));
        let mixed = "Subject: Re: =?UTF-8?Q?caf=C3=A9?= ok";
        assert_eq!(subject(&mail(mixed)).as_deref(), Some("Re: café ok"));
    }

    #[test]
    fn what_cannot_be_decoded_is_kept() {
        let other = "Subject: =?ISO-8859-1?Q?caf=E9?=";
        assert_eq!(
            subject(&mail(other)).as_deref(),
            Some("=?ISO-8859-1?Q?caf=E9?=")
        );
        let broken = "Subject: =?UTF-8?Q?caf=C?= x";
        assert_eq!(
            subject(&mail(broken)).as_deref(),
            Some("=?UTF-8?Q?caf=C?= x")
        );
    }
}
