//! End-to-end tests: slack_notifier (being written).
