//! Builds the repo's plugin crates for `wasm32-wasip2` (used by the tests and by
//! `zoomhost dev`), installing the target with rustup when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// The target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Makes sure `rustup` has the wasm target, adding it if not.
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET)
            {
                return Ok(());
            }
        }
        Ok(_) | Err(_) => {
            // No rustup: assume the toolchain was set up by other means; cargo will say
            // exactly what is missing.
            return Ok(());
        }
    }
    tracing::info!("installing the {WASM_TARGET} target: rustup target add {WASM_TARGET}");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .context("running `rustup target add wasm32-wasip2`")?;
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed; run it yourself and retry");
    }
    Ok(())
}

/// Builds `packages` of the workspace at `workspace` in release mode into
/// `target_dir`, and returns the folder holding the `.wasm` files
/// (`<crate_name_with_underscores>.wasm`).
pub fn build_plugins(
    workspace: &Path,
    packages: &[&str],
    target_dir: &Path,
) -> anyhow::Result<PathBuf> {
    ensure_wasm_target()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    // The outer cargo's settings (e.g. from `cargo test`) must not leak into this build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running cargo build for {}", packages.join(", ")))?;
    if !status.success() {
        bail!(
            "building plugins {} for {WASM_TARGET} failed",
            packages.join(", ")
        );
    }
    Ok(target_dir.join(WASM_TARGET).join("release"))
}

/// The file a plugin crate builds to, inside the folder [`build_plugins`] returned.
pub fn artifact(out_dir: &Path, package: &str) -> PathBuf {
    out_dir.join(format!("{}.wasm", package.replace('-', "_")))
}

/// The nearest folder at or above `start` holding a `Cargo.toml` and a `plugins/` folder.
pub fn find_workspace(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("Cargo.toml").is_file() && d.join("plugins").is_dir())
        .map(Path::to_path_buf)
}

/// Package names of the crates under `<workspace>/plugins/`.
pub fn example_crates(workspace: &Path) -> anyhow::Result<Vec<String>> {
    let dir = workspace.join("plugins");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let manifest = entry?.path().join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let value: toml::Value =
            toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
        let name = value
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .with_context(|| format!("{} has no package.name", manifest.display()))?;
        names.push(name.to_string());
    }
    names.sort();
    Ok(names)
}
