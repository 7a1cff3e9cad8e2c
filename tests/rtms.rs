//! End-to-end tests: rtms (being written).
