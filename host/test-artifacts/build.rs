//! Builds the plugin crates the tests load (the examples under `plugins/` and the test
//! plugins under `tests/plugins/`) for `wasm32-wasip2`, once, with a nested `cargo build`
//! into `target/wasm`, and writes their paths for `src/lib.rs` to include. Cargo reruns
//! it only when a plugin's sources, the SDK or the WIT world change.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// `(crate, folder under the workspace root)`.
const PLUGINS: &[(&str, &str)] = &[
    ("event-logger", "plugins/event-logger"),
    ("slack-notifier", "plugins/slack-notifier"),
    ("transcript-forwarder", "plugins/transcript-forwarder"),
    ("recorder", "tests/plugins/recorder"),
    ("hostile", "tests/plugins/hostile"),
    ("recorder-v0-1", "tests/plugins/recorder-v0-1"),
    ("future-world", "tests/plugins/future-world"),
    ("noop", "tests/plugins/noop"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .ancestors()
        .nth(2)
        .expect("host/test-artifacts is two levels below the workspace root")
        .to_path_buf();
    for watched in ["plugin-sdk", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for (_, dir) in PLUGINS {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    ensure_target();
    let target_dir = root.join("target/wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    for (krate, _) in PLUGINS {
        cmd.args(["-p", krate]);
    }
    scrub_outer_cargo(&mut cmd);
    // The workspace's release profile is the host binary's (fat LTO, one codegen unit);
    // plugins are built as `zoomhost dev` builds them (zoomhost's `wasm_build::PLUGIN_PROFILE`).
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
    let status = cmd.status().expect("running the nested cargo build");
    assert!(
        status.success(),
        "building the test plugins for {TARGET} failed (see the cargo output above)"
    );
    let out = target_dir.join(TARGET).join("release");
    let mut code = String::from(
        "/// Every plugin built: `(crate name, path of its .wasm)`.\npub const ALL: &[(&str, &str)] = &[\n",
    );
    for (krate, _) in PLUGINS {
        let wasm = out.join(format!("{}.wasm", krate.replace('-', "_")));
        assert!(wasm.is_file(), "{} was not built", wasm.display());
        code.push_str(&format!(
            "    ({krate:?}, {:?}),\n",
            wasm.display().to_string()
        ));
    }
    code.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("set by cargo")).join("artifacts.rs");
    std::fs::write(dest, code).expect("writing artifacts.rs");
}

/// Adds the wasm target with rustup when its standard library is missing.
fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if let Ok(out) = installed {
        if out.status.success()
            && !String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        {
            let status = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status()
                .expect("running rustup target add");
            assert!(status.success(), "rustup target add {TARGET} failed");
        }
    }
}

/// The outer cargo's settings for this build script must not leak into the nested build:
/// host rustflags, target dir and target, and what cargo sets for build scripts. The
/// jobserver (`CARGO_MAKEFLAGS`) is kept, so both builds share the same job slots.
fn scrub_outer_cargo(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let outer = matches!(
            key,
            "RUSTFLAGS"
                | "CARGO_ENCODED_RUSTFLAGS"
                | "CARGO_TARGET_DIR"
                | "CARGO_BUILD_TARGET"
                | "TARGET"
                | "HOST"
                | "OUT_DIR"
                | "PROFILE"
                | "OPT_LEVEL"
                | "DEBUG"
                | "NUM_JOBS"
                | "RUSTC_WORKSPACE_WRAPPER"
        ) || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("DEP_");
        if outer {
            cmd.env_remove(key);
        }
    }
}
