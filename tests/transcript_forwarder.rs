//! End-to-end tests: transcript_forwarder (being written).
