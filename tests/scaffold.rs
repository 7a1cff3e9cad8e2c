//! End-to-end tests: scaffold (being written).
