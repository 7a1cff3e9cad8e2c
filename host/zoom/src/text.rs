//! Text from the outside world, made safe to log.

/// At most `max_chars` characters of `text` on one line (control characters become
/// spaces), with `…` when something was cut: for quoting malformed messages and error
/// bodies in logs without flooding them.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        assert_eq!(excerpt("a\nb", 10), "a b");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("é€", 2), "é€");
    }
}
