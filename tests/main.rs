//! zoomhost's end-to-end tests, in one test binary (each linked binary carries wasmtime,
//! so one binary instead of ten saves most of a cold build's link time). Every module
//! drives real parts: components built from the repo's plugin crates, the host, the
//! simulator and loopback servers.

mod architecture;
mod cluster;
mod cluster_processes;
mod dev;
mod operations;
mod plugin_contract;
mod polyglot;
mod rtms;
mod rtms_sdk;
mod runtime;
mod sandbox;
mod scaffold;
mod shards;
mod slack_notifier;
mod support;
mod transcript_forwarder;
mod zoom_events;
mod zoom_webhook;
