//! The layering rules of ARCHITECTURE.md, read from `cargo metadata`: each crate depends
//! on the zoomhost crates below it only, and the runtime on nothing that speaks to the
//! network or Zoom's wire formats.

use std::collections::BTreeMap;

use serde_json::Value;

/// Which zoomhost crates each crate may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("zoomhost-types", &[]),
    ("zoomhost-protocol", &[]),
    ("zoomhost-zoom", &["zoomhost-protocol", "zoomhost-types"]),
    ("zoomhost-sim", &["zoomhost-protocol", "zoomhost-types"]),
    ("zoomhost-runtime", &["zoomhost-types"]),
    (
        "zoomhost",
        &[
            "zoomhost-types",
            "zoomhost-protocol",
            "zoomhost-zoom",
            "zoomhost-sim",
            "zoomhost-runtime",
        ],
    ),
];

/// Crates the runtime must not use: sockets, HTTP servers and clients, Zoom's signatures.
const NOT_IN_RUNTIME: &[&str] = &[
    "axum",
    "reqwest",
    "tokio-tungstenite",
    "tokio-websockets",
    "hmac",
    "sha2",
    "base64",
];

/// `package name -> names of its normal dependencies`, for the workspace's packages.
fn workspace_dependencies() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(crate::support::workspace())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON");
    let mut deps = BTreeMap::new();
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name").to_string();
        let normal: Vec<String> = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().expect("dependency name").to_string())
            .collect();
        deps.insert(name, normal);
    }
    deps
}

#[test]
fn every_crate_depends_on_the_layers_below_it_only() {
    let deps = workspace_dependencies();
    // Every zoomhost crate has a rule (the SDK and the test artifacts are not layers).
    for name in deps.keys().filter(|n| n.starts_with("zoomhost")) {
        let ruled = ALLOWED.iter().any(|(crate_name, _)| crate_name == name);
        assert!(
            ruled || name == "zoomhost-sdk" || name == "zoomhost-test-artifacts",
            "{name} has no layering rule: add it to ARCHITECTURE.md and this test"
        );
    }
    for (name, allowed) in ALLOWED {
        let Some(used) = deps.get(*name) else {
            continue;
        };
        for dep in used.iter().filter(|d| d.starts_with("zoomhost")) {
            assert!(
                allowed.contains(&dep.as_str()),
                "{name} depends on {dep}, which ARCHITECTURE.md does not allow ({name} may use: {allowed:?})"
            );
        }
    }
    for layer in [
        "zoomhost-types",
        "zoomhost-protocol",
        "zoomhost-sim",
        "zoomhost-zoom",
        "zoomhost-runtime",
        "zoomhost",
    ] {
        assert!(
            deps.contains_key(layer),
            "{layer} is missing from the workspace"
        );
    }
}

#[test]
fn the_runtime_knows_nothing_of_sockets_or_zoom_wire_formats() {
    let deps = workspace_dependencies();
    let runtime = &deps["zoomhost-runtime"];
    for banned in NOT_IN_RUNTIME {
        assert!(
            !runtime.iter().any(|d| d == banned),
            "zoomhost-runtime depends on {banned}"
        );
    }
}
