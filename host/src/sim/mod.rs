//! A local Zoom, speaking the same protocols from the server side: used by
//! `zoomhost simulate`, `zoomhost dev` and every end-to-end test.

pub mod events;
pub mod oauth;
pub mod rtms;
pub mod webhook;
