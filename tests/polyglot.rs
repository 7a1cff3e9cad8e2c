//! End-to-end tests: polyglot (being written).
