//! What a plugin declares in `metadata()`, bounded before the host acts on it: names,
//! versions, pattern lists and their entries have limits (over them the version is
//! rejected with a reason, and nothing of the oversized value is logged), and event
//! patterns are parsed once per load, with the unusable ones summarised in one line.

use crate::bindings::types::{MediaKind, Metadata};
use crate::limits::Limits;
use crate::router::EventPattern;

/// How many invalid patterns a summary line quotes.
const QUOTED: usize = 3;

/// The subscriptions a plugin's metadata asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscriptions {
    /// Parsed event patterns.
    pub events: Vec<EventPattern>,
    /// Patterns that could not be parsed (ignored), at most `QUOTED` of them quoted.
    pub invalid: Vec<String>,
    /// How many patterns were invalid in all.
    pub invalid_count: usize,
}

impl Subscriptions {
    /// One line describing the ignored patterns, if any.
    pub fn invalid_summary(&self) -> Option<String> {
        if self.invalid_count == 0 {
            return None;
        }
        let quoted: Vec<String> = self.invalid.iter().map(|p| format!("{p:?}")).collect();
        let more = self.invalid_count - self.invalid.len();
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        Some(format!(
            "ignoring {} invalid event pattern(s): {}{more}; use an exact name, `prefix.*` or `*`",
            self.invalid_count,
            quoted.join(", ")
        ))
    }
}

/// Checks `metadata` against `limits` and parses its event patterns.
pub fn check(metadata: &Metadata, limits: &Limits) -> Result<Subscriptions, String> {
    let name_max = limits.max_name_bytes as usize;
    let entry_max = limits.max_pattern_bytes as usize;
    let list_max = limits.max_event_patterns as usize;
    over("name", metadata.name.len(), name_max, "max_name_bytes")?;
    over(
        "version",
        metadata.version.len(),
        name_max,
        "max_name_bytes",
    )?;
    for (what, list) in [
        ("event patterns", &metadata.events),
        ("wanted hosts", &metadata.wanted_hosts),
        ("config keys", &metadata.config_keys),
    ] {
        let count = list.len();
        if count > list_max {
            return Err(format!(
                "metadata declares {count} {what}, over the limit of {list_max} (limits.max_event_patterns)"
            ));
        }
        if let Some((i, long)) = list.iter().enumerate().find(|(_, e)| e.len() > entry_max) {
            return Err(format!(
                "metadata's {what}[{i}] is {} bytes, over the limit of {entry_max} (limits.max_pattern_bytes)",
                long.len()
            ));
        }
    }
    if metadata.media.len() > MediaKind::ALL.len() {
        return Err(format!(
            "metadata lists {} media kinds; there are {} (audio, transcript, video, share, chat)",
            metadata.media.len(),
            MediaKind::ALL.len()
        ));
    }
    let mut subscriptions = Subscriptions::default();
    for text in &metadata.events {
        match EventPattern::parse(text) {
            Ok(p) => subscriptions.events.push(p),
            Err(_) => {
                subscriptions.invalid_count += 1;
                if subscriptions.invalid.len() < QUOTED {
                    subscriptions.invalid.push(text.clone());
                }
            }
        }
    }
    Ok(subscriptions)
}

fn over(what: &str, len: usize, max: usize, key: &str) -> Result<(), String> {
    if len > max {
        return Err(format!(
            "metadata {what} is {len} bytes, over the limit of {max} (limits.{key})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(events: Vec<String>) -> Metadata {
        Metadata {
            name: "p".into(),
            version: "1".into(),
            events,
            media: vec![],
            wanted_hosts: vec![],
            config_keys: vec![],
        }
    }

    #[test]
    fn over_a_limit_is_a_reason_naming_the_key() {
        let limits = Limits {
            max_event_patterns: 2,
            max_name_bytes: 4,
            ..Limits::default()
        };
        let many = metadata(vec!["a".into(), "b".into(), "c".into()]);
        let err = check(&many, &limits).unwrap_err();
        assert!(
            err.contains("3 event patterns") && err.contains("max_event_patterns"),
            "{err}"
        );
        let mut long = metadata(vec![]);
        long.version = "x".repeat(50_000);
        let err = check(&long, &limits).unwrap_err();
        assert!(err.contains("50000 bytes") && err.len() < 200, "{err}");
        let mut media = metadata(vec![]);
        media.media = vec![MediaKind::Audio; 6];
        assert!(check(&media, &limits).is_err());
    }

    #[test]
    fn invalid_patterns_are_summarised_once() {
        let events: Vec<String> = (0..100)
            .map(|i| format!("a*b{i}"))
            .chain(["x.*".to_string()])
            .collect();
        let s = check(
            &metadata(events),
            &Limits {
                max_event_patterns: 1000,
                ..Limits::default()
            },
        )
        .unwrap();
        assert_eq!(s.events, vec![EventPattern::Prefix("x.".into())]);
        let line = s.invalid_summary().unwrap();
        assert!(line.starts_with("ignoring 100 invalid"), "{line}");
        assert!(line.contains("and 97 more"), "{line}");
    }
}
