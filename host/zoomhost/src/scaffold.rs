//! `zoomhost new NAME`: creates a plugin crate from the template in
//! `host/zoomhost/templates/plugin/` (embedded in the binary), ready to build and load as it is.
//!
//! Two layouts:
//!
//! * **Workspace member.** Run inside a zoomhost checkout, the crate goes to
//!   `<workspace>/plugins/NAME`. Its manifest is shaped like `plugins/event-logger`'s
//!   (package fields inherited from the workspace, the SDK at `../../plugin-sdk`), so it
//!   is picked up by the workspace's `plugins/*` glob and by everything that builds
//!   `plugins/*` (`zoomhost dev`, `replay --build-examples`).
//! * **Standalone.** Anywhere else (or with an explicit destination outside `plugins/`),
//!   a crate with its own empty `[workspace]` table that depends on the SDK by absolute
//!   path: by default the `plugin-sdk` folder of the checkout this binary was built from
//!   ([`default_sdk_dir`]), so the plugin targets the contract version this host serves.
//!   That checkout's `Cargo.lock` is copied along, so the first build uses the
//!   dependency versions the SDK was tested with.
//!
//! Nothing is ever overwritten: the destination must not exist, and a half-written crate
//! is removed again if writing fails.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::wasm_build::{find_workspace, WASM_TARGET};

const LIB_RS: &str = include_str!("../templates/plugin/src/lib.rs.tmpl");
const CARGO_MEMBER: &str = include_str!("../templates/plugin/Cargo.toml.tmpl");
const CARGO_STANDALONE: &str = include_str!("../templates/plugin/Cargo.standalone.toml.tmpl");
const README: &str = include_str!("../templates/plugin/README.md.tmpl");
const GITIGNORE: &str = include_str!("../templates/plugin/gitignore.tmpl");

/// Longest plugin name accepted (the crates.io limit for package names).
pub const MAX_NAME_LEN: usize = 64;

/// Crate names that would shadow a crate every plugin links, or that cargo refuses.
const RESERVED: &[&str] = &[
    "alloc",
    "core",
    "proc_macro",
    "std",
    "test",
    "zoomhost",
    "zoomhost_sdk",
];

/// Rust keywords (all editions), which cargo refuses as crate names.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// How [`create`] runs. Every field has a default (`ScaffoldOptions::default()`).
#[derive(Debug, Clone, Default)]
pub struct ScaffoldOptions {
    /// Folder to create the crate in; it must not exist. A relative path is taken from
    /// [`cwd`](Self::cwd). Default: `<workspace>/plugins/NAME` when [`cwd`](Self::cwd)
    /// is inside a zoomhost checkout, else `<cwd>/NAME`. The crate is a workspace
    /// member exactly when this folder sits directly in a zoomhost checkout's `plugins/`.
    pub dest: Option<PathBuf>,
    /// Folder the workspace search and relative paths start from. Default: the current
    /// directory.
    pub cwd: Option<PathBuf>,
    /// The `plugin-sdk` folder a standalone crate depends on. Default:
    /// [`default_sdk_dir`]. Not used for a workspace member, which always uses its
    /// workspace's SDK.
    pub sdk_dir: Option<PathBuf>,
    /// How to invoke zoomhost in the printed next steps, e.g. `zoomhost` or
    /// `cargo run -p zoomhost --`. Default: `cargo run -p zoomhost --` when this binary
    /// was built in the crate's workspace, `zoomhost` when that is this binary on the
    /// `PATH`, else this binary's full path.
    pub program: Option<String>,
}

/// One command to run after scaffolding, with what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextStep {
    /// What the command does, one line.
    pub why: String,
    /// The shell command, with paths quoted where needed.
    pub command: String,
}

/// What [`create`] made. Its [`Display`](fmt::Display) is what `zoomhost new` prints.
#[derive(Debug, Clone)]
pub struct Scaffolded {
    /// The package name.
    pub name: String,
    /// The crate folder (absolute).
    pub dir: PathBuf,
    /// Whether the crate is a member of a zoomhost workspace (under its `plugins/`).
    pub workspace_member: bool,
    /// The zoomhost checkout whose SDK the crate depends on (its workspace, for a member).
    pub checkout: PathBuf,
    /// The files written, relative to [`dir`](Self::dir).
    pub files: Vec<PathBuf>,
    /// The file name a build produces (`my_plugin.wasm` for `my-plugin`). Deploy it as
    /// `NAME.wasm`: the file stem is the plugin's name to the host.
    pub wasm_file: String,
    /// The commands to run next, in order.
    pub next_steps: Vec<NextStep>,
}

impl fmt::Display for Scaffolded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "created plugin crate `{}` in {}",
            self.name,
            self.dir.display()
        )?;
        if self.workspace_member {
            writeln!(
                f,
                " (a member of the zoomhost workspace {})",
                self.checkout.display()
            )?;
        } else {
            writeln!(
                f,
                " (standalone; zoomhost SDK from {})",
                self.checkout.join("plugin-sdk").display()
            )?;
        }
        for file in &self.files {
            writeln!(f, "  {}", file.display())?;
        }
        writeln!(f, "\nnext steps:")?;
        for step in &self.next_steps {
            writeln!(f, "  # {}", step.why)?;
            writeln!(f, "  {}", step.command)?;
        }
        Ok(())
    }
}

/// Why [`create`] refused. Returned inside the `anyhow::Error` (downcast to match).
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a valid plugin crate name.
    #[error(
        "invalid plugin name {name:?}: {reason}; a plugin name uses lowercase letters, \
         digits, '-' and '_', and starts with a letter{}",
        suggestion.as_ref().map(|s| format!(" (try {s:?})")).unwrap_or_default()
    )]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
        /// A valid name close to it, if there is one.
        suggestion: Option<String>,
    },
    /// The destination exists.
    #[error(
        "{} already exists; zoomhost new never overwrites: choose another name or \
         destination, or remove it first",
        path.display()
    )]
    DestinationExists {
        /// The destination folder.
        path: PathBuf,
    },
    /// A crate of the zoomhost checkout already has this name (`-` and `_` are the same
    /// to cargo's library names, and so to the built `.wasm` file).
    #[error(
        "plugin name {name:?} clashes with the existing crate {existing:?} ({}); \
         choose another name",
        manifest.display()
    )]
    NameClash {
        /// The name given.
        name: String,
        /// The existing package name.
        existing: String,
        /// Its manifest.
        manifest: PathBuf,
    },
    /// The SDK folder for a standalone crate is missing.
    #[error(
        "no zoomhost SDK (a `zoomhost-sdk` crate) at {}: this zoomhost was built from a \
         checkout that has moved or been removed; point at a zoomhost checkout's \
         plugin-sdk folder instead",
        path.display()
    )]
    SdkNotFound {
        /// Where it was looked for.
        path: PathBuf,
    },
}

/// The `plugin-sdk` folder of the zoomhost checkout this binary was built from.
pub fn default_sdk_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .join("plugin-sdk")
}

/// Checks `name` as a plugin crate name: 1 to [`MAX_NAME_LEN`] lowercase ASCII letters,
/// digits, `-` and `_`, starting with a letter, and not a Rust keyword or a reserved
/// crate name (`std`, `test`, `zoomhost`, ...).
pub fn validate_name(name: &str) -> Result<(), ScaffoldError> {
    let invalid = |reason: String| ScaffoldError::InvalidName {
        name: name.to_string(),
        reason,
        suggestion: suggest(name),
    };
    let Some(first) = name.chars().next() else {
        return Err(invalid("it is empty".into()));
    };
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        let what = if bad.is_uppercase() {
            format!("uppercase {bad:?} is not allowed")
        } else if bad.is_whitespace() {
            "whitespace is not allowed".to_string()
        } else {
            format!("{bad:?} is not allowed")
        };
        return Err(invalid(what));
    }
    if !first.is_ascii_lowercase() {
        return Err(invalid(format!("it starts with {first:?}")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "it is longer than {MAX_NAME_LEN} characters"
        )));
    }
    let ident = lib_name(name);
    if KEYWORDS.contains(&ident.as_str()) {
        return Err(ScaffoldError::InvalidName {
            name: name.to_string(),
            reason: format!("`{ident}` is a Rust keyword"),
            suggestion: Some(format!("{name}-plugin")),
        });
    }
    if RESERVED.contains(&ident.as_str()) {
        return Err(ScaffoldError::InvalidName {
            name: name.to_string(),
            reason: format!("`{ident}` is the name of a crate every plugin links"),
            suggestion: Some(format!("{name}-plugin")),
        });
    }
    Ok(())
}

/// A valid name close to `name`, if one differs from it.
fn suggest(name: &str) -> Option<String> {
    let mut out = String::new();
    for c in name.trim().chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || (!out.is_empty() && c.is_ascii_digit()) {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    let out: String = out.chars().take(MAX_NAME_LEN).collect();
    let out = out.trim_end_matches('-').to_string();
    (!out.is_empty() && out != name && validate_simple(&out)).then_some(out)
}

/// The character rules alone (no keyword check), for suggestions.
fn validate_simple(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !KEYWORDS.contains(&lib_name(name).as_str())
        && !RESERVED.contains(&lib_name(name).as_str())
}

/// The library (and `.wasm` file) name cargo derives from a package name.
fn lib_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The Rust type name of the plugin: the name in CamelCase ending in `Plugin`, so it
/// never collides with an SDK or prelude name (`my-plugin` → `MyPlugin`,
/// `transcriber` → `TranscriberPlugin`).
fn type_name(name: &str) -> String {
    let mut camel: String = name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if !camel.ends_with("Plugin") || camel == "Plugin" {
        camel.push_str("Plugin");
    }
    camel
}

/// Whether `dir` holds the `zoomhost-sdk` crate.
fn is_sdk_dir(dir: &Path) -> bool {
    package_name(&dir.join("Cargo.toml")).as_deref() == Some("zoomhost-sdk")
}

/// `package.name` of a manifest, if it can be read.
fn package_name(manifest: &Path) -> Option<String> {
    let text = fs::read_to_string(manifest).ok()?;
    let value: toml::Value = toml::from_str(&text).ok()?;
    value
        .get("package")?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

/// The nearest zoomhost checkout at or above `start`: a workspace with `plugins/` whose
/// `plugin-sdk/` is the zoomhost SDK.
fn zoomhost_workspace(start: &Path) -> Option<PathBuf> {
    let mut from = start.to_path_buf();
    loop {
        let ws = find_workspace(&from)?;
        if is_sdk_dir(&ws.join("plugin-sdk")) {
            return Some(ws);
        }
        from = ws.parent()?.to_path_buf();
    }
}

/// Fails if a crate of the checkout already uses `name` (or its `-`/`_` twin).
fn check_clash(name: &str, checkout: &Path) -> Result<(), ScaffoldError> {
    let wanted = lib_name(name);
    let mut manifests = vec![checkout.join("plugin-sdk/Cargo.toml")];
    for group in ["host", "plugins", "tests/plugins"] {
        let Ok(entries) = fs::read_dir(checkout.join(group)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("Cargo.toml"))
            .filter(|m| m.is_file())
            .collect();
        found.sort();
        manifests.extend(found);
    }
    for manifest in manifests {
        if let Some(existing) = package_name(&manifest) {
            if lib_name(&existing) == wanted {
                return Err(ScaffoldError::NameClash {
                    name: name.to_string(),
                    existing,
                    manifest,
                });
            }
        }
    }
    Ok(())
}

/// Where the crate goes and how it builds.
struct Layout {
    dir: PathBuf,
    /// The zoomhost workspace, when the crate is a member of it.
    member_of: Option<PathBuf>,
    /// The checkout whose SDK it uses.
    checkout: PathBuf,
    sdk_dir: PathBuf,
}

fn layout(name: &str, options: &ScaffoldOptions, cwd: &Path) -> anyhow::Result<Layout> {
    let dir = match &options.dest {
        Some(dest) => cwd.join(dest),
        None => match zoomhost_workspace(cwd) {
            Some(ws) => ws.join("plugins").join(name),
            None => cwd.join(name),
        },
    };
    if dir.symlink_metadata().is_ok() {
        return Err(ScaffoldError::DestinationExists { path: dir }.into());
    }
    // A member sits directly in a zoomhost workspace's `plugins/` (the `plugins/*` glob).
    let parent = dir
        .parent()
        .with_context(|| format!("{} has no parent folder", dir.display()))?;
    let member_of = fs::canonicalize(parent).ok().and_then(|parent| {
        let ws = zoomhost_workspace(&parent)?;
        let plugins = fs::canonicalize(ws.join("plugins")).ok()?;
        (plugins == parent).then_some(ws)
    });
    let folder = dir
        .file_name()
        .with_context(|| format!("{} does not name a new folder", dir.display()))?;
    let dir = match fs::canonicalize(parent) {
        Ok(parent) => parent.join(folder),
        Err(_) => dir.clone(),
    };
    let (checkout, sdk_dir) = match &member_of {
        Some(ws) => (ws.clone(), ws.join("plugin-sdk")),
        None => {
            let sdk = options.sdk_dir.clone().unwrap_or_else(default_sdk_dir);
            let sdk = cwd.join(sdk);
            let sdk = match fs::canonicalize(&sdk) {
                Ok(sdk) if is_sdk_dir(&sdk) => sdk,
                _ => return Err(ScaffoldError::SdkNotFound { path: sdk }.into()),
            };
            let checkout = sdk.parent().unwrap_or(&sdk).to_path_buf();
            (checkout, sdk)
        }
    };
    Ok(Layout {
        dir,
        member_of,
        checkout,
        sdk_dir,
    })
}

/// Creates the plugin crate `name` (see the [module docs](self) for the two layouts)
/// and returns what was made and what to run next.
///
/// Errors, as a [`ScaffoldError`] inside the `anyhow::Error`: an invalid name, an
/// existing destination, a name already used by a crate of the zoomhost checkout, a
/// missing SDK. I/O failures carry the path.
pub fn create(name: &str, options: &ScaffoldOptions) -> anyhow::Result<Scaffolded> {
    validate_name(name)?;
    let cwd = match &options.cwd {
        Some(cwd) => cwd.clone(),
        None => std::env::current_dir().context("reading the current directory")?,
    };
    let layout = layout(name, options, &cwd)?;
    check_clash(name, &layout.checkout)?;

    let wasm_file = format!("{}.wasm", lib_name(name));
    let member = layout.member_of.is_some();
    let program = options
        .program
        .clone()
        .unwrap_or_else(|| detect_program(layout.member_of.as_deref()));
    let ctx = StepContext {
        name,
        wasm_file: &wasm_file,
        layout: &layout,
        cwd: &cwd,
        program: &program,
    };
    let next_steps = ctx.steps(false);
    let readme_steps = StepContext {
        program: "zoomhost",
        ..ctx
    }
    .steps(true);

    let type_name = type_name(name);
    let vars: &[(&str, &str)] = &[("name", name), ("type_name", &type_name)];
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let manifest = if member {
        render(CARGO_MEMBER, vars)
    } else {
        let sdk = layout.sdk_dir.to_str().with_context(|| {
            format!(
                "the SDK path {} is not UTF-8; cargo cannot take it in Cargo.toml",
                layout.sdk_dir.display()
            )
        })?;
        let sdk_path = toml::Value::String(sdk.to_string()).to_string();
        render(CARGO_STANDALONE, &[("name", name), ("sdk_path", &sdk_path)])
    };
    files.push(("Cargo.toml".into(), manifest));
    files.push(("src/lib.rs".into(), render(LIB_RS, vars)));
    files.push((
        "README.md".into(),
        render(
            README,
            &[
                ("name", name),
                ("build_commands", &readme_commands(member, &readme_steps)),
            ],
        ),
    ));
    if !member {
        files.push((".gitignore".into(), GITIGNORE.to_string()));
        // The versions the SDK was built and tested with; cargo prunes the rest.
        let lock = layout.checkout.join("Cargo.lock");
        if let Ok(text) = fs::read_to_string(&lock) {
            files.push(("Cargo.lock".into(), text));
        }
    }

    write_crate(&layout.dir, &files)?;
    Ok(Scaffolded {
        name: name.to_string(),
        dir: layout.dir.clone(),
        workspace_member: member,
        checkout: layout.checkout.clone(),
        files: files.into_iter().map(|(path, _)| path).collect(),
        wasm_file,
        next_steps,
    })
}

/// Replaces each `{{key}}` of `template`.
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

/// Creates `dir` (which must not exist) and writes `files` into it; on failure removes
/// `dir` again.
fn write_crate(dir: &Path, files: &[(PathBuf, String)]) -> anyhow::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(ScaffoldError::DestinationExists {
                path: dir.to_path_buf(),
            }
            .into())
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let written = files.iter().try_for_each(|(rel, text)| {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    });
    if written.is_err() {
        // Only ever the folder created above.
        let _ = fs::remove_dir_all(dir);
    }
    written
}

/// What the next steps are built from.
#[derive(Clone, Copy)]
struct StepContext<'a> {
    name: &'a str,
    wasm_file: &'a str,
    layout: &'a Layout,
    cwd: &'a Path,
    program: &'a str,
}

impl StepContext<'_> {
    /// The commands to run next. `portable` (for the README): no `cd` and no
    /// machine-specific checks.
    fn steps(&self, portable: bool) -> Vec<NextStep> {
        let mut steps = Vec::new();
        let step = |why: &str, command: String| NextStep {
            why: why.to_string(),
            command,
        };
        let zh = self.program;
        let name = self.name;
        let wasm = self.wasm_file;
        let target_missing = !portable && wasm_target_missing();
        match &self.layout.member_of {
            Some(ws) => {
                if !portable && !same_dir(self.cwd, ws) {
                    steps.push(step(
                        "the commands below run from the zoomhost workspace",
                        format!("cd {}", shell_quote(&ws.display().to_string())),
                    ));
                }
                if portable || target_missing {
                    steps.push(step(
                        "once per machine: the Rust target plugins are built for",
                        format!("rustup target add {WASM_TARGET}"),
                    ));
                }
                steps.push(step(
                    "build it, into the target folder the other plugin builds share",
                    format!(
                        "cargo build --release --target {WASM_TARGET} --target-dir target/wasm -p {name}"
                    ),
                ));
                steps.push(step(
                    "load it the way the host will, and show what it subscribes to",
                    format!("{zh} check target/wasm/{WASM_TARGET}/release/{wasm}"),
                ));
                steps.push(step(
                    &format!(
                        "run the simulator, the host and every plugins/* crate: each save of \
                         plugins/{name}/src/lib.rs rebuilds and hot-swaps it"
                    ),
                    format!("{zh} dev"),
                ));
            }
            None => {
                if !portable {
                    steps.push(step(
                        "the commands below run from the plugin's folder",
                        format!("cd {}", shell_quote(&self.display_dir())),
                    ));
                }
                if portable || target_missing {
                    steps.push(step(
                        "once per machine: the Rust target plugins are built for",
                        format!("rustup target add {WASM_TARGET}"),
                    ));
                }
                steps.push(step(
                    "build it (the first build also compiles the SDK and its dependencies)",
                    format!("cargo build --release --target {WASM_TARGET}"),
                ));
                let built = format!("target/{WASM_TARGET}/release/{wasm}");
                steps.push(step(
                    "load it the way the host will, and show what it subscribes to",
                    format!("{zh} check {built}"),
                ));
                steps.push(step(
                    &format!(
                        "deploy it as {name}.wasm, its name to the host (`{zh} run` loads \
                         ./plugins and hot-swaps each new copy)"
                    ),
                    format!("mkdir -p plugins && cp {built} plugins/{name}.wasm"),
                ));
                let sample = self.layout.checkout.join("host/samples/meeting.jsonl");
                if sample.is_file() {
                    steps.push(step(
                        "play a recorded meeting (events, audio, transcript) through it",
                        format!(
                            "{zh} replay {} --plugins plugins",
                            shell_quote(&sample.display().to_string())
                        ),
                    ));
                }
            }
        }
        steps
    }

    /// The crate folder, relative to the current directory when it is below it.
    fn display_dir(&self) -> String {
        let cwd = fs::canonicalize(self.cwd).unwrap_or_else(|_| self.cwd.to_path_buf());
        match self.layout.dir.strip_prefix(&cwd) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
            _ => self.layout.dir.display().to_string(),
        }
    }
}

/// The README's "Build, check, run" body.
fn readme_commands(member: bool, steps: &[NextStep]) -> String {
    let mut out = String::from(if member {
        "From the root of the zoomhost repo (`zoomhost` is `cargo run -p zoomhost --` there):\n\n```sh\n"
    } else {
        "From this folder (`zoomhost` is the zoomhost binary; in its repo, `cargo run -p zoomhost --`):\n\n```sh\n"
    });
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("# {}\n{}\n", step.why, step.command));
    }
    out.push_str("```");
    out
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// True only when rustup answers and lacks the wasm target (without rustup, the
/// toolchain was set up some other way and cargo will say what is missing).
fn wasm_target_missing() -> bool {
    match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(out) if out.status.success() => !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == WASM_TARGET),
        _ => false,
    }
}

/// How to run this zoomhost in printed commands (see [`ScaffoldOptions::program`]).
fn detect_program(member_of: Option<&Path>) -> String {
    let Ok(exe) = std::env::current_exe().and_then(fs::canonicalize) else {
        return "zoomhost".into();
    };
    if let Some(ws) = member_of {
        if fs::canonicalize(ws.join("target")).is_ok_and(|target| exe.starts_with(target)) {
            return "cargo run -p zoomhost --".into();
        }
    }
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            fs::canonicalize(dir.join(format!("zoomhost{}", std::env::consts::EXE_SUFFIX)))
                .is_ok_and(|found| found == exe)
        })
    });
    if on_path {
        "zoomhost".into()
    } else {
        shell_quote(&exe.display().to_string())
    }
}

/// `s` quoted for a POSIX shell when it holds anything but safe characters.
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_with_a_reason_and_a_suggestion() {
        for ok in ["my-plugin", "a", "bot2", "snake_case", "x-1_y"] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let cases = [
            ("", "it is empty", None),
            ("My-Plugin", "uppercase 'M'", Some("my-plugin")),
            ("2fa", "starts with '2'", Some("fa")),
            ("-x", "starts with '-'", Some("x")),
            ("my plugin", "whitespace", Some("my-plugin")),
            ("my.plugin", "'.' is not allowed", Some("my-plugin")),
            ("fn", "Rust keyword", Some("fn-plugin")),
            (
                "zoomhost-sdk",
                "crate every plugin links",
                Some("zoomhost-sdk-plugin"),
            ),
            ("tést", "'é' is not allowed", Some("t-st")),
        ];
        for (name, reason, suggestion) in cases {
            match validate_name(name) {
                Err(ScaffoldError::InvalidName {
                    reason: r,
                    suggestion: s,
                    ..
                }) => {
                    assert!(r.contains(reason), "{name:?}: {r}");
                    assert_eq!(s.as_deref(), suggestion, "{name:?}");
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(validate_name(&long).is_err());
        assert!(validate_name(&long[..MAX_NAME_LEN]).is_ok());
    }

    #[test]
    fn type_names_never_collide_with_sdk_or_prelude_names() {
        assert_eq!(type_name("my-plugin"), "MyPlugin");
        assert_eq!(type_name("transcriber"), "TranscriberPlugin");
        assert_eq!(type_name("result"), "ResultPlugin");
        assert_eq!(type_name("plugin"), "PluginPlugin");
        assert_eq!(type_name("a_b-c2"), "ABC2Plugin");
    }

    #[test]
    fn templates_leave_no_placeholder_behind() {
        let vars: &[(&str, &str)] = &[
            ("name", "x"),
            ("type_name", "XPlugin"),
            ("sdk_path", "\"/sdk\""),
            ("build_commands", "..."),
        ];
        for template in [LIB_RS, CARGO_MEMBER, CARGO_STANDALONE, README, GITIGNORE] {
            let text = render(template, vars);
            assert!(!text.contains("{{"), "{text}");
        }
        // The member manifest is shaped like the example plugin's.
        let event_logger = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/event-logger/Cargo.toml"),
        )
        .unwrap();
        assert_eq!(
            render(CARGO_MEMBER, &[("name", "event-logger")]),
            event_logger
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("target/x.wasm"), "target/x.wasm");
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
