//! Text that third parties hand ICON (a retailer's order id or refusal reason, an error
//! message), made safe to store and show.
//!
//! PostgreSQL refuses NUL in `text`, so one NUL byte in a retailer's `order_id` would fail the
//! transaction that records it, and the checkout would be retried without end. Control
//! characters would also garble logs and callback bodies, and an unbounded string would bloat
//! every row and message that carries it.

/// The longest retailer order id ICON keeps, in characters.
pub const MAX_ORDER_ID_CHARS: usize = 255;
/// The longest reason or error text ICON keeps, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// `text` without NUL and other control characters (each becomes a space, then runs of spaces
/// at the ends are trimmed), cut to at most `max_chars` characters (ending in `…` when cut).
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.chars().count() <= max_chars {
        return cleaned.to_owned();
    }
    let mut cut: String = cleaned.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// [`sanitize`] for an optional value; an answer that is empty once cleaned is no answer.
pub fn sanitize_opt(text: Option<&str>, max_chars: usize) -> Option<String> {
    text.map(|t| sanitize(t, max_chars))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_nul_and_controls_and_bounds_length() {
        assert_eq!(sanitize("sim-1\u{0}\u{7}x\n", 255), "sim-1  x");
        assert_eq!(sanitize("abcdef", 4), "abc…");
        assert_eq!(sanitize("abcd", 4), "abcd");
        assert_eq!(sanitize_opt(Some("\u{0}"), 10), None);
        assert_eq!(sanitize_opt(None, 10), None);
        assert!(!sanitize(&"é\u{0}".repeat(5000), MAX_ORDER_ID_CHARS).contains('\u{0}'));
        assert_eq!(
            sanitize(&"é".repeat(5000), MAX_ORDER_ID_CHARS)
                .chars()
                .count(),
            MAX_ORDER_ID_CHARS
        );
    }
}
