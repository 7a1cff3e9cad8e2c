//! Builds the repo's plugin crates for `wasm32-wasip2` (used by the tests and by
//! `zoomhost dev`), installing the target with rustup when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// The target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Makes sure the Rust toolchain can build for [`WASM_TARGET`]: when its standard
/// library is missing, adds it with `rustup target add`, or, without rustup, fails with
/// exactly what to run.
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    // The toolchain's own answer: where the target's standard library would be.
    let libdir = target_libdir(WASM_TARGET);
    if libdir.as_deref().is_some_and(has_std) {
        return Ok(());
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET)
            {
                return Ok(());
            }
        }
        // rustup is there but could not list the targets: try adding it anyway.
        Ok(_) => {}
        Err(_) => {
            return match libdir {
                // No rustup, and rustc says where the target belongs: it is not there.
                Some(dir) => Err(anyhow::anyhow!(missing_target_help(&dir, false))),
                // Neither rustup nor an answer from rustc: let cargo say what is missing.
                None => Ok(()),
            };
        }
    }
    // rustup's own progress goes to stderr too.
    eprintln!("installing the Rust {WASM_TARGET} target: rustup target add {WASM_TARGET}");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .context("running `rustup target add wasm32-wasip2`")?;
    if !status.success() {
        let dir = libdir.unwrap_or_default();
        bail!("{}", missing_target_help(&dir, true));
    }
    Ok(())
}

/// `rustc --print target-libdir --target TARGET`, if rustc answers.
fn target_libdir(target: &str) -> Option<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// Whether `libdir` holds a compiled `core`.
fn has_std(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libcore-") && name.ends_with(".rlib")
        })
    })
}

/// What to do when the target's standard library is missing. `libdir` is where rustc
/// looks for it (may be empty when unknown).
fn missing_target_help(libdir: &Path, rustup_failed: bool) -> String {
    let place = if libdir.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" (looked in {})", libdir.display())
    };
    if rustup_failed {
        format!(
            "the Rust {WASM_TARGET} target is not installed and `rustup target add {WASM_TARGET}` \
             failed{place}; run `rustup target add {WASM_TARGET}` yourself (it needs network \
             access once) and retry"
        )
    } else {
        format!(
            "the Rust {WASM_TARGET} target is not installed for this toolchain{place} and rustup \
             was not found to add it; install rustup (https://rustup.rs) and run \
             `rustup target add {WASM_TARGET}`, or install your toolchain's {WASM_TARGET} \
             standard library by the means it came with"
        )
    }
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
    plugin_build_settings(&mut cmd);
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

/// The release profile's settings for plugin builds, as environment overrides. The
/// workspace's release profile is the host binary's (fat LTO, one codegen unit): for a
/// plugin that would re-optimise the whole of `std` and its dependencies together on
/// every rebuild, for little gain in a guest whose calls are mostly host work. The test
/// plugins' build script sets the same.
pub const PLUGIN_PROFILE: [(&str, &str); 2] = [
    ("CARGO_PROFILE_RELEASE_LTO", "false"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
];

/// Sets up a nested wasm build of plugins: removes the outer cargo's settings (e.g. from
/// `cargo test`) that must not leak into it (host rustflags, its target dir and its build
/// target) and applies [`PLUGIN_PROFILE`].
pub fn plugin_build_settings(cmd: &mut Command) {
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(PLUGIN_PROFILE);
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

#[cfg(test)]
mod target_tests {
    use super::*;

    #[test]
    fn the_installed_target_is_found_and_a_missing_one_explained() {
        // The tests build wasm plugins, so this toolchain has the target.
        let libdir = target_libdir(WASM_TARGET).expect("rustc answers --print target-libdir");
        assert!(has_std(&libdir), "no libcore in {}", libdir.display());
        assert!(ensure_wasm_target().is_ok());
        let empty = tempfile::tempdir().unwrap();
        assert!(!has_std(empty.path()));
        let help = missing_target_help(empty.path(), false);
        assert!(help.contains("rustup target add wasm32-wasip2"), "{help}");
        assert!(help.contains("https://rustup.rs"), "{help}");
        assert!(help.contains(&empty.path().display().to_string()), "{help}");
        let help = missing_target_help(Path::new(""), true);
        assert!(
            help.contains("failed; run `rustup target add wasm32-wasip2` yourself"),
            "{help}"
        );
    }

    #[test]
    fn plugin_builds_turn_off_the_host_binarys_whole_program_optimisation() {
        // The workspace's release profile is the host binary's ...
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let manifest: toml::Table = std::fs::read_to_string(&manifest).unwrap().parse().unwrap();
        let release = &manifest["profile"]["release"];
        assert_eq!(release["lto"].as_str(), Some("fat"));
        assert_eq!(release["codegen-units"].as_integer(), Some(1));
        // ... and a nested plugin build overrides both.
        let mut cmd = Command::new("cargo");
        cmd.env("CARGO_TARGET_DIR", "/elsewhere");
        plugin_build_settings(&mut cmd);
        let envs: Vec<_> = cmd.get_envs().collect();
        for (key, value) in PLUGIN_PROFILE {
            assert!(
                envs.contains(&(key.as_ref(), Some(value.as_ref()))),
                "{key} not set: {envs:?}"
            );
        }
        assert!(
            envs.contains(&("CARGO_TARGET_DIR".as_ref(), None)),
            "{envs:?}"
        );
    }
}
