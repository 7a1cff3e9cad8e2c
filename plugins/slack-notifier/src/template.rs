//! Message templates: `{placeholder}` substitution over a Zoom event payload, with the
//! inserted values escaped for Slack mrkdwn.
//!
//! * `{name}` where `name` is one of the [named placeholders](NAMED) (`{topic}`,
//!   `{participant}`, …) or a dotted path into the payload (`{object.host_id}`,
//!   `{object.recording_files.0.file_type}`; numbers index arrays).
//! * `{{` and `}}` are a literal `{` and `}`. A `{` that does not open a well-formed
//!   placeholder (`{ not one }`, an unclosed `{`) is kept as written.
//! * A value that is missing (or JSON `null`, or an empty string) renders as
//!   [`MISSING`]; strings are inserted as they are, numbers and booleans as JSON writes
//!   them, objects and arrays as compact JSON. Rendering never fails.

use zoomhost_sdk::serde_json::Value;

/// What a placeholder renders as when the payload has no value for it.
pub const MISSING: &str = "-";

/// The named placeholders and the payload paths they read, first present wins. Paths are
/// relative to the event's `payload` (`{"account_id", "object": {...}}` for meeting and
/// recording events; flat for the RTMS lifecycle events).
pub const NAMED: &[(&str, &[&str])] = &[
    ("topic", &["object.topic"]),
    ("meeting_id", &["object.id", "meeting_id"]),
    ("uuid", &["object.uuid", "meeting_uuid"]),
    ("host_id", &["object.host_id", "operator_id"]),
    ("host_email", &["object.host_email"]),
    ("participant", &["object.participant.user_name"]),
    ("participant_email", &["object.participant.email"]),
    ("join_url", &["object.join_url"]),
    ("share_url", &["object.share_url"]),
    ("duration", &["object.duration"]),
    ("start_time", &["object.start_time"]),
    ("end_time", &["object.end_time"]),
    ("timezone", &["object.timezone"]),
    ("account_id", &["account_id", "object.account_id"]),
];

/// One event, as templates see it.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The Zoom event name (`{event}`).
    pub event: &'a str,
    /// The event's `payload`.
    pub payload: &'a Value,
}

impl<'a> Context<'a> {
    /// A context for `event` with `payload`.
    pub fn new(event: &'a str, payload: &'a Value) -> Self {
        Context { event, payload }
    }

    /// The raw (unescaped) value of placeholder `name`, `None` when the payload has none.
    pub fn get(&self, name: &str) -> Option<String> {
        if name == "event" {
            return Some(self.event.to_string());
        }
        match NAMED.iter().find(|(named, _)| *named == name) {
            Some((_, paths)) => paths.iter().find_map(|path| self.path(path)),
            None => self.path(name),
        }
    }

    /// The value at a dotted `path` in the payload, as text.
    fn path(&self, path: &str) -> Option<String> {
        let value = path
            .split('.')
            .try_fold(self.payload, |value, key| match value {
                Value::Object(map) => map.get(key),
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            })?;
        match value {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// Escapes the three characters Slack mrkdwn treats as control characters.
pub fn escape_mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `name` may be a placeholder: ASCII letters, digits, `_`, `-` and `.`.
fn is_placeholder(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Renders `template` for `ctx`, escaping every inserted value for mrkdwn.
pub fn render(template: &str, ctx: &Context<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
            out.push_str(&tail[..1]);
            rest = after;
            continue;
        }
        if tail.starts_with('{') {
            if let Some(end) = tail.find('}') {
                let name = &tail[1..end];
                if is_placeholder(name) {
                    match ctx.get(name) {
                        Some(value) => out.push_str(&escape_mrkdwn(&value)),
                        None => out.push_str(MISSING),
                    }
                    rest = &tail[end + 1..];
                    continue;
                }
            }
        }
        // A lone brace: literal.
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoomhost_sdk::serde_json::json;

    fn payload() -> Value {
        json!({
            "account_id": "acc-1",
            "object": {
                "id": 81234567890u64,
                "uuid": "abc==",
                "topic": "Q3 <Planning> & Review",
                "duration": 45,
                "start_time": "2026-11-22T10:00:00Z",
                "join_url": "https://zoom.us/j/81234567890?pwd=x&y=1",
                "participant": {"user_name": "Grace Hopper", "email": ""},
                "recording_files": [{"file_type": "MP4"}],
                "flags": {"a": true},
                "nothing": null
            }
        })
    }

    #[test]
    fn named_placeholders_and_paths() {
        let p = payload();
        let ctx = Context::new("meeting.started", &p);
        assert_eq!(
            render("{event}: *{topic}* ({meeting_id}, {duration} min) by {participant}", &ctx),
            "meeting.started: *Q3 &lt;Planning&gt; &amp; Review* (81234567890, 45 min) by Grace Hopper"
        );
        assert_eq!(
            render(
                "{object.recording_files.0.file_type} {object.flags} {account_id}",
                &ctx
            ),
            r#"MP4 {"a":true} acc-1"#
        );
        assert_eq!(
            render("<{join_url}|join>", &ctx),
            "<https://zoom.us/j/81234567890?pwd=x&amp;y=1|join>"
        );
    }

    #[test]
    fn missing_values_render_as_a_dash() {
        let p = payload();
        let ctx = Context::new("meeting.started", &p);
        assert_eq!(
            render(
                "{share_url}|{host_email}|{participant_email}|{object.nothing}|{object.a.b.c}|{object.recording_files.9}",
                &ctx
            ),
            "-|-|-|-|-|-"
        );
        let not_an_object = json!("just text");
        let ctx = Context::new("x", &not_an_object);
        assert_eq!(render("{topic} {object.id}", &ctx), "- -");
    }

    #[test]
    fn braces_that_are_not_placeholders_stay() {
        let p = payload();
        let ctx = Context::new("e", &p);
        assert_eq!(render("{{topic}} {topic", &ctx), "{topic} {topic");
        assert_eq!(render("{ not one } {} }{", &ctx), "{ not one } {} }{");
        assert_eq!(render("json: {\"a\": 1}", &ctx), "json: {\"a\": 1}");
        assert_eq!(render("ünïcødé {event} ✓", &ctx), "ünïcødé e ✓");
        assert_eq!(render("", &ctx), "");
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_mrkdwn("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(escape_mrkdwn("*bold* _it_"), "*bold* _it_");
    }
}
