//! zoomhost, the binary: keeps a Zoom account's live connections open and routes every
//! event and media frame into sandboxed WebAssembly plugins.
//!
//! This crate is the only one that knows both sides. The layers below it:
//! `zoomhost-types` (what sources hand over), `zoomhost-protocol` (Zoom's wire formats),
//! `zoomhost-zoom` (the Zoom clients), `zoomhost-sim` (a local Zoom) and
//! `zoomhost-runtime` (the plugins). Here:
//!
//! - [`config`]: reads `zoomhost.toml`, the environment and `.env`, expands `${VAR}`, and
//!   composes the runtime's and the Zoom sources' own sections;
//! - [`host`]: the one `Host` that wires sources, the RTMS client and the runtime, with
//!   the start-up and shutdown order; [`inputs`]: the input path, which delivers each
//!   event once whichever source it came from (a content-derived id remembered 65
//!   minutes), and its taps;
//! - [`cluster`]: with a `[cluster]` section, membership of a NATS JetStream
//!   cluster: the ingress leader lease that guards the event WebSocket, every
//!   accepted event published once to a JetStream stream, and workers that own its
//!   partitions through leases and acknowledge each event once its plugins are done,
//!   run the RTMS streams of their partitions (state saved in key-value for the next
//!   owner), and apply plugins and grants pushed for the whole cluster;
//! - [`logging`]: the host's own log, text or JSON lines (`--log-format`);
//! - [`admin`]: the admin HTTP listener: Prometheus `/metrics`, `/healthz`, `/readyz`,
//!   the `/v1` JSON API (plugins, streams, sources, cluster; reload, enable, disable) and
//!   the `zoomhost status` client;
//! - the commands: [`cli`] (`run`, `status`, `simulate`, `check`, `replay`), [`dev`], [`bench`] (with [`bench_floor`], its I/O floor), [`bench_cluster`],
//!   [`scaffold`] (`new`), [`replay`], and [`wasm_build`] for building plugin crates.
//!
//! Data flows one way: **source → inputs → router → plugin mailbox → component** (see
//! ARCHITECTURE.md at the repository root).

#![warn(missing_docs)]

pub mod admin;
pub mod bench;
pub mod bench_cluster;
pub mod bench_floor;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod host;
pub mod inputs;
pub mod logging;
pub mod replay;
pub mod scaffold;
pub mod wasm_build;
