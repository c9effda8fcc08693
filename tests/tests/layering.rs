//! The crate graph is the layering: this test fails when a crate of ours gains a dependency
//! on a sibling that the architecture does not allow (see docs/ARCHITECTURE.md).

use std::process::Command;

/// Each workspace crate and the sibling crates it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("log-core", &[]),
    ("coordinator", &[]),
    ("wire", &["log-core"]),
    ("semantics", &["wire", "log-core", "coordinator"]),
    ("tools", &["log-core", "coordinator", "wire", "semantics"]),
    (
        "tests",
        &["log-core", "coordinator", "wire", "semantics", "tools"],
    ),
];

#[test]
fn crates_depend_only_on_the_layers_below() {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let ours: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    for (name, _) in ALLOWED {
        assert!(ours.contains(name), "workspace crate {name} is missing");
    }
    for package in packages {
        let name = package["name"].as_str().expect("name");
        let allowed = ALLOWED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("crate {name} is not in the layering table"));
        for dependency in package["dependencies"].as_array().expect("dependencies") {
            let dep = dependency["name"].as_str().expect("dependency name");
            let is_ours = ours.contains(&dep);
            // A crate's own dev-dependency on itself (for test features) is not an edge.
            if is_ours && dep != name {
                assert!(allowed.contains(&dep), "{name} must not depend on {dep}");
            }
        }
    }
}
