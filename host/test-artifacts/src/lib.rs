//! The repo's plugin crates, built for `wasm32-wasip2` once by this crate's build script
//! (a nested `cargo build` into `target/wasm`), for the tests to load. Nothing in the
//! production binary depends on it.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The `.wasm` file of plugin crate `krate`.
///
/// # Panics
/// When `krate` is not one of [`ALL`].
pub fn path(krate: &str) -> &'static str {
    ALL.iter()
        .find(|(name, _)| *name == krate)
        .map(|(_, path)| *path)
        .unwrap_or_else(|| panic!("{krate} is not a plugin built by zoomhost-test-artifacts"))
}
