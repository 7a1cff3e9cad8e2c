//! The Slack message for one event: `text` (the notification fallback) plus Block Kit
//! `blocks`:
//!
//! 1. a `section` with the rendered template as mrkdwn;
//! 2. a `context` with the meeting's facts that the payload has: topic, meeting id, host;
//! 3. a `section` of links when the payload has them: *Join meeting* (`join_url`) and
//!    *View recording* (`share_url`).
//!
//! Links are mrkdwn links rather than buttons: a button makes Slack send an interaction
//! payload to the app, and an app that only has an incoming webhook shows a warning
//! sign next to every clicked button.

use zoomhost_sdk::serde_json::{json, Value};

use crate::template::{escape_mrkdwn, render, Context};

/// Slack's limit for a section's text.
const SECTION_LIMIT: usize = 3000;
/// Slack's limit for a context element's text.
const CONTEXT_LIMIT: usize = 2000;
/// Slack truncates `text` past 40 000 characters; it is a notification line, keep it short.
const TEXT_LIMIT: usize = 4000;

/// The built-in template of `event`, if it has one.
pub fn default_template(event: &str) -> Option<&'static str> {
    Some(match event {
        "meeting.started" => ":large_green_circle: *{topic}* has started.",
        "meeting.ended" => ":red_circle: *{topic}* has ended.",
        "meeting.participant_joined" => ":wave: *{participant}* joined *{topic}*.",
        "meeting.participant_left" => ":door: *{participant}* left *{topic}*.",
        "recording.completed" => {
            ":movie_camera: The recording of *{topic}* is ready ({duration} min)."
        }
        _ => return None,
    })
}

/// The template for events with neither a configured nor a built-in one.
pub const FALLBACK_TEMPLATE: &str = "`{event}`: *{topic}*";

/// The JSON body posted to Slack for `ctx` rendered with `template`.
pub fn build(template: &str, ctx: &Context<'_>) -> Value {
    let mut text = render(template, ctx);
    if text.trim().is_empty() {
        // Slack refuses a message without text (`no_text`).
        text = escape_mrkdwn(ctx.event);
    }
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate(&text, SECTION_LIMIT)},
    })];

    let facts: Vec<Value> = [
        ("Topic", "topic"),
        ("Meeting ID", "meeting_id"),
        ("Host", "host_email"),
    ]
    .iter()
    .filter_map(|(label, key)| {
        let value = ctx.get(key)?;
        let line = format!("*{label}:* {}", escape_mrkdwn(&value));
        Some(json!({"type": "mrkdwn", "text": truncate(&line, CONTEXT_LIMIT)}))
    })
    .collect();
    if !facts.is_empty() {
        blocks.push(json!({"type": "context", "elements": facts}));
    }

    let links: Vec<String> = [
        ("Join meeting", "join_url"),
        ("View recording", "share_url"),
    ]
    .iter()
    .filter_map(|(label, key)| Some(format!("<{}|{label}>", link_target(&ctx.get(key)?)?)))
    .collect();
    if !links.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": links.join("  ·  ")},
        }));
    }

    json!({"text": truncate(&text, TEXT_LIMIT), "blocks": blocks})
}

/// `url` made safe inside `<url|label>`, or `None` when it is not an `http(s)` URL.
fn link_target(url: &str) -> Option<String> {
    let url = url.trim();
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '|' => out.push_str("%7C"),
            ' ' => out.push_str("%20"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    Some(escape_mrkdwn(&out))
}

/// `text` cut to at most `limit` characters, with an ellipsis when cut.
fn truncate(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit.saturating_sub(1)) {
        Some((at, _)) if text[at..].chars().nth(1).is_some() => format!("{}…", &text[..at]),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_shape() {
        let payload = json!({
            "account_id": "acc",
            "object": {
                "id": 812, "topic": "Plan <A> & B", "host_email": "h@example.com",
                "join_url": "https://zoom.us/j/812?pwd=a&b|c",
                "share_url": "https://zoom.us/rec/share/xyz",
            }
        });
        let ctx = Context::new("meeting.started", &payload);
        let body = build(default_template("meeting.started").unwrap(), &ctx);
        let text = ":large_green_circle: *Plan &lt;A&gt; &amp; B* has started.";
        assert_eq!(
            body,
            json!({
                "text": text,
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                    {"type": "context", "elements": [
                        {"type": "mrkdwn", "text": "*Topic:* Plan &lt;A&gt; &amp; B"},
                        {"type": "mrkdwn", "text": "*Meeting ID:* 812"},
                        {"type": "mrkdwn", "text": "*Host:* h@example.com"},
                    ]},
                    {"type": "section", "text": {"type": "mrkdwn", "text":
                        "<https://zoom.us/j/812?pwd=a&amp;b%7Cc|Join meeting>  ·  <https://zoom.us/rec/share/xyz|View recording>"}},
                ]
            })
        );
    }

    #[test]
    fn sparse_payloads_still_make_a_message() {
        let payload = json!({"object": {"join_url": "javascript:alert(1)"}});
        let ctx = Context::new("user.updated", &payload);
        let body = build(FALLBACK_TEMPLATE, &ctx);
        assert_eq!(body["text"], "`user.updated`: *-*");
        assert_eq!(body["blocks"].as_array().unwrap().len(), 1);

        let body = build("  ", &ctx);
        assert_eq!(body["text"], "user.updated");
    }

    #[test]
    fn long_text_is_cut_to_slack_limits() {
        let payload = json!({"object": {"topic": "é".repeat(5000)}});
        let ctx = Context::new("meeting.started", &payload);
        let body = build("{topic}", &ctx);
        let section = body["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(section.chars().count(), SECTION_LIMIT);
        assert!(section.ends_with('…'));
        assert_eq!(body["text"].as_str().unwrap().chars().count(), TEXT_LIMIT);
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
    }
}
