//! One `cargo build --release --target wasm32-wasip2` run for a set of plugin crates,
//! read through cargo's JSON messages: which component each crate built to, or the
//! compiler errors that belong to it (the relevant part, not the whole log).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Deserialize;

use crate::wasm_build::{plugin_build_settings, WASM_TARGET};

/// At most this many compiler errors are kept per crate...
const MAX_ERRORS: usize = 3;
/// ...and at most this many lines of them.
const MAX_LINES: usize = 40;

/// A crate to build: its package name and manifest.
#[derive(Debug, Clone)]
pub(crate) struct CrateSpec {
    pub name: String,
    pub manifest: PathBuf,
}

/// What one cargo run did.
#[derive(Debug)]
pub(crate) struct BuildRun {
    /// Wall time of the run.
    pub took: Duration,
    /// Per package name: the built component, or the error text.
    pub results: BTreeMap<String, Result<PathBuf, String>>,
}

/// Builds `crates` of the workspace at `workspace` into `target_dir`, with
/// `--keep-going` so one broken crate does not hide the others' results. Fails only
/// when cargo cannot be run at all.
pub(crate) fn build(
    workspace: &Path,
    target_dir: &Path,
    crates: &[CrateSpec],
) -> anyhow::Result<BuildRun> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--keep-going",
            "--message-format=json",
            "--target",
            WASM_TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    for c in crates {
        cmd.args(["-p", &c.name]);
    }
    plugin_build_settings(&mut cmd);
    cmd.env("CARGO_TERM_COLOR", "never");
    let started = Instant::now();
    let out = cmd.output().with_context(|| {
        format!(
            "running `{cargo} build --target {WASM_TARGET}` in {}",
            workspace.display()
        )
    })?;
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut results = read_messages(&stdout, &stderr, out.status.success(), crates);
    if !out.status.success() {
        // Say how cargo ended when it printed nothing useful.
        for r in results.values_mut() {
            if let Err(e) = r {
                if e.is_empty() {
                    *e = format!(
                        "cargo build failed ({}) without an error message",
                        out.status
                    );
                }
            }
        }
    }
    Ok(BuildRun { took, results })
}

#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    manifest_path: Option<PathBuf>,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
    #[serde(default)]
    message: Option<Diagnostic>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(default)]
    crate_types: Vec<String>,
}

#[derive(Deserialize)]
struct Diagnostic {
    level: String,
    #[serde(default)]
    rendered: Option<String>,
    #[serde(default)]
    message: String,
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

/// Sorts cargo's JSON `stdout` into a result per crate: the `.wasm` its `cdylib`
/// target built to, or its compiler errors (or, when it has none of its own, cargo's
/// error lines from `stderr`).
pub(crate) fn read_messages(
    stdout: &str,
    stderr: &str,
    success: bool,
    crates: &[CrateSpec],
) -> BTreeMap<String, Result<PathBuf, String>> {
    let mut artifacts: BTreeMap<usize, PathBuf> = BTreeMap::new();
    let mut errors: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let find = |manifest: &Option<PathBuf>| {
        let manifest = manifest.as_deref()?;
        crates.iter().position(|c| same_path(&c.manifest, manifest))
    };
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<Message>(line) else {
            continue;
        };
        match msg.reason.as_str() {
            "compiler-artifact" => {
                let is_cdylib = msg
                    .target
                    .as_ref()
                    .is_some_and(|t| t.crate_types.iter().any(|k| k == "cdylib"));
                if !is_cdylib {
                    continue;
                }
                let Some(i) = find(&msg.manifest_path) else {
                    continue;
                };
                if let Some(wasm) = msg
                    .filenames
                    .iter()
                    .find(|f| f.extension().is_some_and(|e| e == "wasm"))
                {
                    artifacts.insert(i, wasm.clone());
                }
            }
            "compiler-message" => {
                let Some(diag) = msg.message else { continue };
                if !diag.level.starts_with("error") {
                    continue;
                }
                let Some(i) = find(&msg.manifest_path) else {
                    continue;
                };
                let text = diag
                    .rendered
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or(diag.message);
                errors
                    .entry(i)
                    .or_default()
                    .push(text.trim_end().to_string());
            }
            _ => {}
        }
    }
    let cargo_errors = cargo_error_lines(stderr);
    crates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let result = match (artifacts.remove(&i), errors.remove(&i)) {
                (_, Some(errs)) => Err(excerpt(&errs)),
                (Some(wasm), None) => Ok(wasm),
                (None, None) if success => Err(format!(
                    "cargo reported no wasm component for {}: is it a `cdylib` crate?",
                    c.name
                )),
                (None, None) => Err(cargo_errors.clone()),
            };
            (c.name.clone(), result)
        })
        .collect()
}

/// The first [`MAX_ERRORS`] errors, at most [`MAX_LINES`] lines, and how many were cut.
fn excerpt(errors: &[String]) -> String {
    let mut lines: Vec<&str> = Vec::new();
    let mut shown = 0;
    for e in errors.iter().take(MAX_ERRORS) {
        if lines.len() >= MAX_LINES {
            break;
        }
        if !lines.is_empty() {
            lines.push("");
        }
        let room = MAX_LINES.saturating_sub(lines.len());
        lines.extend(e.lines().take(room));
        shown += 1;
    }
    let mut text = lines.join("\n");
    let more = errors.len() - shown;
    if more > 0 {
        text.push_str(&format!(
            "\n... and {more} more error{}",
            if more == 1 { "" } else { "s" }
        ));
    }
    text
}

/// Cargo's own error lines (a manifest that does not parse, an unknown package, a
/// missing target, ...): from the first `error` line on, without progress lines.
fn cargo_error_lines(stderr: &str) -> String {
    const PROGRESS: &[&str] = &[
        "Compiling ",
        "Checking ",
        "Finished ",
        "Blocking ",
        "Updating ",
        "Downloading ",
        "Downloaded ",
        "Locking ",
        "Adding ",
        "Fresh ",
        "Running ",
    ];
    let lines: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("error"))
        .filter(|l| {
            let t = l.trim_start();
            !PROGRESS.iter().any(|p| t.starts_with(p))
                && !t.starts_with("warning: build failed, waiting for other jobs")
        })
        .collect();
    let mut text = lines
        .iter()
        .take(MAX_LINES)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    if lines.len() > MAX_LINES {
        text.push_str(&format!("\n... ({} more lines)", lines.len() - MAX_LINES));
    }
    text.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<CrateSpec> {
        vec![
            CrateSpec {
                name: "good".into(),
                manifest: "/ws/plugins/good/Cargo.toml".into(),
            },
            CrateSpec {
                name: "bad".into(),
                manifest: "/ws/plugins/bad/Cargo.toml".into(),
            },
        ]
    }

    fn artifact(manifest: &str, kind: &str, file: &str) -> String {
        serde_json::json!({
            "reason": "compiler-artifact",
            "manifest_path": manifest,
            "target": {"kind": [kind], "crate_types": [kind], "name": "x"},
            "filenames": [file],
            "fresh": false
        })
        .to_string()
    }

    fn message(manifest: &str, level: &str, rendered: &str) -> String {
        serde_json::json!({
            "reason": "compiler-message",
            "manifest_path": manifest,
            "message": {"level": level, "message": "short", "rendered": rendered}
        })
        .to_string()
    }

    #[test]
    fn artifacts_and_errors_are_attributed_to_their_crate() {
        let stdout = [
            artifact("/reg/serde/Cargo.toml", "lib", "/t/libserde.rlib"),
            artifact(
                "/ws/plugins/good/Cargo.toml",
                "cdylib",
                "/t/wasm32-wasip2/release/good.wasm",
            ),
            message(
                "/ws/plugins/bad/Cargo.toml",
                "warning",
                "warning: unused variable",
            ),
            message(
                "/ws/plugins/bad/Cargo.toml",
                "error",
                "error[E0308]: mismatched types\n --> plugins/bad/src/lib.rs:3:5\n",
            ),
            "not json".to_string(),
            r#"{"reason":"build-finished","success":false}"#.to_string(),
        ]
        .join("\n");
        let r = read_messages(&stdout, "", false, &specs());
        assert_eq!(
            r["good"],
            Ok(PathBuf::from("/t/wasm32-wasip2/release/good.wasm"))
        );
        assert_eq!(
            r["bad"],
            Err("error[E0308]: mismatched types\n --> plugins/bad/src/lib.rs:3:5".to_string())
        );
    }

    #[test]
    fn many_errors_are_cut_to_an_excerpt() {
        let many: Vec<String> = (0..10)
            .map(|i| {
                message(
                    "/ws/plugins/bad/Cargo.toml",
                    "error",
                    &format!("error {i}\n  detail"),
                )
            })
            .collect();
        let r = read_messages(&many.join("\n"), "", false, &specs());
        let err = r["bad"].clone().unwrap_err();
        assert_eq!(
            err,
            "error 0\n  detail\n\nerror 1\n  detail\n\nerror 2\n  detail\n... and 7 more errors"
        );
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let r = read_messages(
            &message("/ws/plugins/bad/Cargo.toml", "error", &long),
            "",
            false,
            &specs(),
        );
        assert_eq!(r["bad"].clone().unwrap_err().lines().count(), MAX_LINES);
    }

    #[test]
    fn cargo_errors_without_compiler_messages_come_from_stderr() {
        let stderr = "    Updating crates.io index\n\
                      error: failed to parse manifest at `/ws/plugins/bad/Cargo.toml`\n\
                      \n\
                      Caused by:\n  invalid key\n";
        let r = read_messages("", stderr, false, &specs());
        let expected = "error: failed to parse manifest at `/ws/plugins/bad/Cargo.toml`\n\nCaused by:\n  invalid key";
        assert_eq!(r["bad"], Err(expected.to_string()));
        assert_eq!(r["good"], Err(expected.to_string()));
    }

    #[test]
    fn a_successful_build_without_a_component_says_so() {
        let r = read_messages(
            &artifact("/ws/plugins/good/Cargo.toml", "lib", "/t/libgood.rlib"),
            "",
            true,
            &specs(),
        );
        assert!(r["good"]
            .clone()
            .unwrap_err()
            .contains("is it a `cdylib` crate?"));
    }
}
