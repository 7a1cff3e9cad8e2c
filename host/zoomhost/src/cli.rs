//! The `zoomhost` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::HostConfig;
use crate::replay;
use zoomhost_runtime::identity::PluginIdentity;
use zoomhost_runtime::instance::LiveInstance;
use zoomhost_runtime::{PluginHost, PluginInfo, Runtime};

/// zoomhost: Zoom events and RTMS media into sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "zoomhost", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How the host's log is written: `text` (coloured only on a terminal) or `json`
    /// (one object per line: time, level, target, message, plugin, stream, ...).
    #[arg(
        long,
        global = true,
        env = "ZOOMHOST_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: crate::logging::LogFormat,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole pipeline on this machine, no Zoom account: the Zoom simulator (events and
    /// RTMS media), the host pointed at it and the workspace's plugins/* crates, rebuilt
    /// and hot-swapped when their sources change; shows live what flows.
    Dev {
        /// Scenario to play, over and over (default host/samples/rtms-meeting.toml).
        #[arg(long, short)]
        scenario: Option<PathBuf>,
        /// Host config for grants and plugin config (default: generated in
        /// target/zoomhost-dev/, pointing the example plugins at a local sink).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Play the scenario once, then stop.
        #[arg(long)]
        once: bool,
        /// Make the simulator fail the way Zoom does while the scenario plays: the event
        /// WebSocket dropped, closed with 1001, closed at token expiry with OAuth answering
        /// 500 for a while, stalled; RTMS failovers, interruptions and media loss. A
        /// steady stream of events flows meanwhile, sent both on the WebSocket and as
        /// webhooks (delivered once); the live view shows each outage and its recovery.
        #[arg(long)]
        chaos: bool,
        /// Seconds between two chaos faults (event-side faults, and RTMS chaos rounds).
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 8.0,
            requires = "chaos"
        )]
        chaos_interval: f64,
        /// A local cluster instead of one host: nats-server (from PATH or installed into
        /// target/), an ingress node and N worker nodes as `zoomhost run` processes; the
        /// live view shows which worker holds which meeting (kill -9 one to watch the
        /// failover).
        #[arg(long, value_name = "N", conflicts_with = "chaos")]
        workers: Option<usize>,
    },
    /// Create a plugin crate from the template: inside the zoomhost repo in
    /// plugins/NAME (picked up by `zoomhost dev`), elsewhere in ./NAME.
    New {
        /// Crate name: lowercase letters, digits, `-` and `_`, starting with a letter.
        name: String,
        /// Where to create it instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Load test: N simulated RTMS streams at real-time pace (or unpaced) through a
    /// pass-through plugin; prints frames/s, CPU per frame, latency percentiles, drops,
    /// RSS per stream and, with --idle, the idle host's CPU.
    Bench(crate::bench::BenchOptions),
    /// The cluster's figures on this machine: events/s end to end (simulator, ingress,
    /// JetStream, worker, plugin), added latency per event against a single host, and the
    /// failover time of a worker and of the ingress (both killed with SIGKILL).
    BenchCluster(crate::bench_cluster::ClusterBenchOptions),
    /// The simulator process of `zoomhost bench` (internal).
    #[command(hide = true)]
    BenchSim {
        /// Streams to serve.
        #[arg(long)]
        streams: usize,
        /// Frames per stream.
        #[arg(long)]
        frames: u32,
        /// Frames as fast as the sockets take them.
        #[arg(long)]
        unpaced: bool,
        /// Every stream's frames at the same instants.
        #[arg(long)]
        aligned: bool,
    },
    /// The sender process of `zoomhost bench --io-floor` (internal).
    #[command(hide = true)]
    BenchFloorSend {
        /// Where the reader listens.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// Sockets to open.
        #[arg(long)]
        streams: usize,
        /// Messages per socket.
        #[arg(long)]
        frames: u32,
        /// `spread`, `aligned` or `unpaced`.
        #[arg(long, value_parser = crate::bench_floor::Pace::parse)]
        pace: crate::bench_floor::Pace,
    },
    /// Ask a running host (its admin API) what it holds: plugins (state, deliveries,
    /// failures, drops, instances), sources (connected, last outage), RTMS streams with
    /// their plugins and, in a cluster, nodes, roles and partitions.
    Status {
        /// The admin API's URL (default: the config's `[admin] bind`, else
        /// http://127.0.0.1:9464).
        #[arg(long, value_name = "URL")]
        admin: Option<String>,
        /// The admin API's bearer token (default: the config's `admin.token`).
        #[arg(long, env = "ZOOMHOST_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Host config to read `[admin]` from.
        #[arg(long, short, default_value = "zoomhost.toml")]
        config: PathBuf,
        /// Print the admin API's answers as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Start the host with its plugins folder watched.
    Run {
        /// Host config file (TOML).
        #[arg(long, short, default_value = "zoomhost.toml")]
        config: PathBuf,
    },
    /// Run the built-in Zoom simulator (OAuth, event WebSocket, RTMS signaling and media)
    /// and play a scenario to the first client that connects; prints the settings to
    /// point a host at it (the RTMS client signs with the same app credentials).
    Simulate {
        /// Scenario file (TOML or JSON).
        #[arg(long, short, default_value = "host/samples/scenario.toml")]
        scenario: PathBuf,
        /// Keep serving after the scenario ends, until Ctrl-C.
        #[arg(long)]
        hold: bool,
    },
    /// Validate a plugin component and print its metadata.
    Check {
        /// The `.wasm` file.
        plugin: PathBuf,
        /// Host config whose `[plugins.NAME]` config values and grants the check runs
        /// `init` with (NAME is the file stem); optional.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Cluster plugins (the `[cluster]` section's NATS): every worker loads, hot-swaps
    /// and unloads them as if they were dropped in (or removed from) its plugins folder.
    Plugin {
        /// What to do.
        #[command(subcommand)]
        action: PluginAction,
    },
    /// The cluster (`[cluster]`'s NATS): who is in it and what each node holds.
    Cluster {
        /// What to do.
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Push a JSON-lines file of recorded events (and media) through a folder of plugins.
    Replay {
        /// The JSON-lines file.
        file: PathBuf,
        /// Folder of `.wasm` plugins (defaults to the config's `plugins_dir`).
        #[arg(long, short)]
        plugins: Option<PathBuf>,
        /// Host config file; optional.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Build the workspace's example plugin crates (`plugins/*`) for wasm32-wasip2
        /// first and replay through them (run from inside the zoomhost repo).
        #[arg(long, conflicts_with = "plugins")]
        build_examples: bool,
    },
}

/// `zoomhost plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Check a component (as `zoomhost check` compiles it) and store it as NAME (the
    /// file stem), replacing an earlier version on every worker.
    Push {
        /// The `NAME.wasm` file.
        file: PathBuf,
        /// Also push NAME's grants for every worker: a TOML file holding the body of a
        /// `[plugins.NAME]` table (as `plugin grants`).
        #[arg(long)]
        grants: Option<PathBuf>,
        /// Host config with the `[cluster]` section (and the limits the check uses).
        #[arg(long, short, default_value = "zoomhost.toml")]
        config: PathBuf,
    },
    /// Push plugin NAME's grants (`allow_http`, `stream_control`, `config`, `enabled`,
    /// `limits`, `instances`: the body of a `[plugins.NAME]` table, in a TOML file) to
    /// every worker, over each node's own file; `--remove` gives the files' back.
    Grants {
        /// The plugin name.
        name: String,
        /// The TOML file with the table's body.
        #[arg(required_unless_present = "remove", conflicts_with = "remove")]
        file: Option<PathBuf>,
        /// Remove NAME's pushed grants instead.
        #[arg(long)]
        remove: bool,
        /// Host config with the `[cluster]` section.
        #[arg(long, short, default_value = "zoomhost.toml")]
        config: PathBuf,
    },
    /// Remove plugin NAME from the cluster (every worker unloads it).
    Remove {
        /// The plugin name.
        name: String,
        /// Host config with the `[cluster]` section.
        #[arg(long, short, default_value = "zoomhost.toml")]
        config: PathBuf,
    },
    /// List the cluster's plugins, and which have grants pushed.
    List {
        /// Host config with the `[cluster]` section.
        #[arg(long, short, default_value = "zoomhost.toml")]
        config: PathBuf,
    },
}

/// `zoomhost cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// Nodes (role, pid, version, uptime, admin URL), the ingress leader of each event
    /// subscription, each partition's owner and the RTMS streams, read from the
    /// cluster's lease bucket.
    Status {
        /// NATS URL (instead of the config's `cluster.nats_url`).
        #[arg(long)]
        nats: Option<String>,
        /// NATS `.creds` file (with `--nats`).
        #[arg(long, requires = "nats")]
        creds: Option<PathBuf>,
        /// Host config with the `[cluster]` section (used without `--nats`).
        #[arg(long, short, default_value = "zoomhost.toml")]
        config: PathBuf,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run { config } => run_host(&config).await,
        Command::Status {
            admin,
            token,
            config,
            json,
        } => crate::admin::status::run(admin, token, &config, json).await,
        Command::Dev {
            scenario,
            config,
            once,
            chaos,
            chaos_interval,
            workers,
        } => crate::dev::run_dev(crate::dev::DevOptions {
            scenario,
            config,
            once,
            pause: None,
            chaos: chaos.then(|| {
                crate::dev::ChaosOptions::every(Duration::from_secs_f64(
                    chaos_interval.clamp(0.1, 3600.0),
                ))
            }),
            workers,
        })
        .await
        .map(|()| ExitCode::SUCCESS),
        Command::New { name, dir } => crate::scaffold::create(
            &name,
            &crate::scaffold::ScaffoldOptions {
                dest: dir,
                ..Default::default()
            },
        )
        .map(|created| {
            println!("{created}");
            ExitCode::SUCCESS
        }),
        Command::Bench(options) => crate::bench::run(options).await,
        Command::BenchSim {
            streams,
            frames,
            unpaced,
            aligned,
        } => crate::bench::serve_sim(streams, frames, unpaced, aligned).await,
        Command::BenchFloorSend {
            addr,
            streams,
            frames,
            pace,
        } => crate::bench_floor::send(addr, streams, frames, pace),
        Command::Simulate { scenario, hold } => simulate(&scenario, hold).await,
        Command::Check { plugin, config } => check(&plugin, config.as_deref()).await,
        Command::Plugin { action } => plugin_command(action).await,
        Command::Cluster { action } => cluster_command(action).await,
        Command::BenchCluster(options) => crate::bench_cluster::run(options).await,
        Command::Replay {
            file,
            plugins,
            config,
            build_examples,
        } => {
            // `_built` keeps the temp folder of built examples alive during the replay.
            let (plugins, _built) = if build_examples {
                match build_examples_into_temp() {
                    Ok(dir) => (Some(dir.path().to_path_buf()), Some(dir)),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                (plugins, None)
            };
            replay_file(&file, plugins, config.as_deref()).await
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<HostConfig> {
    match path {
        Some(p) => HostConfig::load(p),
        None => Ok(HostConfig::default()),
    }
}

async fn run_host(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = if config_path.exists() {
        HostConfig::load(config_path)?
    } else {
        tracing::warn!(
            "{} not found: running with defaults (plugins folder ./plugins, no grants) and Zoom settings from the environment",
            config_path.display()
        );
        let cwd = std::env::current_dir().context("reading the current folder")?;
        HostConfig::from_env(&cwd)?
    };
    let watch_file = config_path.exists().then(|| config_path.to_path_buf());
    let live = config.zoom.is_some();
    // Without an [admin] section the admin API listens on loopback.
    let mut config = config;
    config.admin.get_or_insert_with(Default::default);
    let host = crate::host::Host::start(
        config,
        crate::host::HostOptions {
            log_sink: None,
            watch: Some(watch_file),
        },
    )
    .await?;
    if !live {
        tracing::info!(
            "no [zoom] configuration: no live sources (plugins are still hosted and hot-reloaded)"
        );
    }
    let loaded: Vec<String> = host
        .plugins()
        .plugins()
        .await
        .into_iter()
        .map(|p| p.name)
        .collect();
    match host.admin_addr() {
        Some(addr) => {
            tracing::info!(plugins = ?loaded, admin = %addr, "zoomhost running (admin API: http://{addr}/metrics, /readyz, /v1; `zoomhost status`); Ctrl-C to stop")
        }
        None => tracing::info!(plugins = ?loaded, "zoomhost running; Ctrl-C to stop"),
    }
    shutdown_signal().await;
    // Stop accepting first, then let the plugins drain what was accepted.
    let stopped = host.shutdown().await;
    print_summary(&stopped.plugins);
    Ok(ExitCode::SUCCESS)
}

async fn simulate(scenario_path: &Path, hold: bool) -> anyhow::Result<ExitCode> {
    let scenario = zoomhost_sim::events::Scenario::load(scenario_path)?;
    let zoom = zoomhost_sim::LocalZoom::start().await?;
    let sim = &zoom.events;
    println!(
        "simulated Zoom is up (RTMS signaling at {}). Point a host at it with:",
        zoom.rtms.signaling_url()
    );
    for (var, value) in zoom.env() {
        println!("  export {var}={value}");
    }
    println!("waiting for a client to connect (Ctrl-C to stop)...");
    tokio::select! {
        _ = shutdown_signal() => return Ok(ExitCode::SUCCESS),
        _ = async { while !sim.wait_connected(Duration::from_secs(3600)).await {} } => {}
    }
    let report = scenario.run_with(sim, Some(&zoom.rtms)).await?;
    println!(
        "scenario {}: {} events sent while connected, {} missed (no client), {} faults",
        scenario_path.display(),
        report.sent.len(),
        report.missed.len(),
        report.faults
    );
    if hold {
        println!("holding; Ctrl-C to stop");
        shutdown_signal().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn check(path: &Path, config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let config = load_config(config_path)?;
    let runtime = Runtime::new(&config.runtime)?;
    let name = zoomhost_runtime::plugin_name(path).unwrap_or_else(|| "plugin".into());
    let grant = config.runtime.grant(&name);
    let compiled = runtime.compile(&bytes, &path.display().to_string(), &grant.limits)?;
    let identity = Arc::new(PluginIdentity::new(&name, grant, None));
    let instance = LiveInstance::start(&runtime, &compiled, identity)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let m = instance.metadata();
    let list = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(", ")
        }
    };
    println!(
        "{}: ok, a zoomhost plugin for {}",
        path.display(),
        compiled.world_version()
    );
    println!("  name:         {}", m.name);
    println!("  version:      {}", m.version);
    println!("  events:       {}", list(&m.events));
    let media: Vec<String> = m.media.iter().map(|k| k.as_str().to_string()).collect();
    println!("  media:        {}", list(&media));
    println!("  wanted hosts: {}", list(&m.wanted_hosts));
    println!("  config keys:  {}", list(&m.config_keys));
    Ok(ExitCode::SUCCESS)
}

/// The config and `[cluster]` section a `plugin` command needs.
fn cluster_config(path: &Path) -> anyhow::Result<(HostConfig, crate::config::ClusterConfig)> {
    let config = HostConfig::load(path)?;
    let cluster = config.cluster.clone().with_context(|| {
        format!(
            "{}: no [cluster] section: `zoomhost plugin` stores plugins in the cluster's NATS (cluster.nats_url)",
            path.display()
        )
    })?;
    Ok((config, cluster))
}

async fn plugin_command(action: PluginAction) -> anyhow::Result<ExitCode> {
    use crate::cluster::plugins;
    match action {
        PluginAction::Push {
            file,
            grants,
            config,
        } => {
            let name = plugins::name_of_file(&file)?;
            let (config, cluster) = cluster_config(&config)?;
            // Checked before anything is stored: a bad table names the plugin and key.
            let grants = match grants {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    plugins::check_grant(&name, &text)
                        .with_context(|| format!("in {}", path.display()))?;
                    Some(text)
                }
                None => None,
            };
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let runtime = Runtime::new(&config.runtime)?;
            let grant = config.runtime.grant(&name);
            let compiled = runtime.compile(&bytes, &file.display().to_string(), &grant.limits)?;
            let store = plugins::connect_store(&cluster).await?;
            if let Some(text) = grants {
                let kv = plugins::connect_grants(&cluster).await?;
                plugins::push_grants(&kv, &name, &text).await?;
                println!("pushed the grants of {name} to {}", cluster.nats_url);
            }
            plugins::push(&store, &name, &bytes).await?;
            println!(
                "pushed {name} ({} bytes, {}) to {}",
                bytes.len(),
                compiled.world_version(),
                cluster.nats_url
            );
        }
        PluginAction::Grants {
            name,
            file,
            remove,
            config,
        } => {
            let (_, cluster) = cluster_config(&config)?;
            match (file, remove) {
                (_, true) => {
                    let kv = plugins::connect_grants(&cluster).await?;
                    plugins::remove_grants(&kv, &name).await?;
                    println!(
                        "removed the pushed grants of {name} from {}",
                        cluster.nats_url
                    );
                }
                (Some(path), false) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    plugins::check_grant(&name, &text)
                        .with_context(|| format!("in {}", path.display()))?;
                    let kv = plugins::connect_grants(&cluster).await?;
                    plugins::push_grants(&kv, &name, &text).await?;
                    println!("pushed the grants of {name} to {}", cluster.nats_url);
                }
                (None, false) => anyhow::bail!("plugin grants {name}: give FILE.toml or --remove"),
            }
        }
        PluginAction::Remove { name, config } => {
            anyhow::ensure!(
                plugins::valid_name(&name),
                "\"{name}\" is not a plugin name (ASCII letters, digits, '-' and '_')"
            );
            let (_, cluster) = cluster_config(&config)?;
            let store = plugins::connect_store(&cluster).await?;
            plugins::remove(&store, &name).await?;
            println!("removed {name} from {}", cluster.nats_url);
        }
        PluginAction::List { config } => {
            let (_, cluster) = cluster_config(&config)?;
            let store = plugins::connect_store(&cluster).await?;
            let listed = plugins::list(&store).await?;
            if listed.is_empty() {
                println!("no plugins in {}", cluster.nats_url);
            }
            for (name, size) in listed {
                println!("{name:<24} {size:>10} bytes");
            }
            let grants = plugins::list_grants(&plugins::connect_grants(&cluster).await?).await?;
            if !grants.is_empty() {
                println!("grants pushed for: {}", grants.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn cluster_command(action: ClusterAction) -> anyhow::Result<ExitCode> {
    match action {
        ClusterAction::Status {
            nats,
            creds,
            config,
            json,
        } => {
            let cluster = match nats {
                Some(url) => {
                    let mut c = crate::config::ClusterConfig::new(url, crate::config::Role::Worker);
                    c.node = format!("status-{}", std::process::id());
                    if let Some(path) = creds {
                        c.auth = crate::config::ClusterAuth::CredsFile(path);
                    }
                    c
                }
                None => HostConfig::load(&config)?.cluster.with_context(|| {
                    format!(
                        "{}: no [cluster] section; give the cluster's NATS with --nats URL",
                        config.display()
                    )
                })?,
            };
            let status = crate::cluster::status::snapshot_at(&cluster).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{status}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds every crate under the workspace's `plugins/` for wasm32-wasip2 and copies the
/// components into a fresh temp folder.
fn build_examples_into_temp() -> anyhow::Result<tempfile::TempDir> {
    let cwd = std::env::current_dir().context("reading the current folder")?;
    let workspace = crate::wasm_build::find_workspace(&cwd).with_context(|| {
        format!(
            "--build-examples needs the zoomhost repo: no workspace with plugins/ above {}",
            cwd.display()
        )
    })?;
    let crates = crate::wasm_build::example_crates(&workspace)?;
    let names: Vec<&str> = crates.iter().map(String::as_str).collect();
    eprintln!(
        "building example plugins for wasm32-wasip2: {}",
        names.join(", ")
    );
    let out = crate::wasm_build::build_plugins(&workspace, &names, &workspace.join("target/wasm"))?;
    let dir = tempfile::tempdir().context("creating a temp plugins folder")?;
    for name in &names {
        let from = crate::wasm_build::artifact(&out, name);
        std::fs::copy(&from, dir.path().join(format!("{name}.wasm")))
            .with_context(|| format!("copying {}", from.display()))?;
    }
    Ok(dir)
}

async fn replay_file(
    file: &Path,
    plugins: Option<PathBuf>,
    config_path: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut config = load_config(config_path)?;
    if let Some(dir) = plugins {
        config.runtime.plugins_dir = dir;
    }
    let capacity = config.runtime.limits.mailbox_capacity;
    let (items, mut errors) = replay::parse(&text);
    let host = PluginHost::new(config.runtime, None)?;
    let loaded = host.load_dir().await?;
    if loaded.is_empty() {
        anyhow::bail!(
            "no plugin loaded from {}",
            host.config().plugins_dir.display()
        );
    }
    let started = Instant::now();
    let mut player = replay::Player::new(host.router());
    let total = items.len();
    for (line, item) in items {
        // Replay may run faster than plugins: wait instead of letting events expire.
        while host.router().busiest_queue() >= capacity / 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Err(e) = player.play(item) {
            errors.push(format!("line {line}: {e}"));
        }
    }
    player.finish();
    let infos = host.shutdown(Duration::from_secs(60)).await;
    println!(
        "replayed {} events and media items from {} in {:.1} ms",
        total,
        file.display(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    print_summary(&infos);
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        errors.sort_by_key(|e| {
            e.strip_prefix("line ")
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0)
        });
        eprintln!(
            "{} malformed input line(s) in {}:",
            errors.len(),
            file.display()
        );
        for e in &errors {
            eprintln!("  {e}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Prints one line per plugin: events delivered/failed/dropped, media delivered/failed,
/// audio frames dropped, outbound HTTP denied, crashes, quarantine, time inside the plugin.
pub fn print_summary(infos: &[PluginInfo]) {
    println!(
        "{:<20} {:>9} {:>7} {:>8} {:>9} {:>7} {:>8} {:>7} {:>8} {:>6} {:>10}",
        "plugin",
        "delivered",
        "failed",
        "dropped",
        "media",
        "mfailed",
        "adropped",
        "denied",
        "crashes",
        "quar.",
        "time ms"
    );
    for i in infos {
        let s = &i.stats;
        println!(
            "{:<20} {:>9} {:>7} {:>8} {:>9} {:>7} {:>8} {:>7} {:>8} {:>6} {:>10.1}",
            i.name,
            s.events_delivered,
            s.events_failed,
            s.events_dropped,
            s.media_delivered,
            s.media_failed,
            s.audio_dropped,
            s.http_denied,
            s.crashes,
            if s.quarantined { "yes" } else { "no" },
            s.busy_micros as f64 / 1000.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_commands_parse() {
        let cli = Cli::try_parse_from(["zoomhost", "plugin", "push", "rec.wasm", "-c", "z.toml"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::Plugin { action: PluginAction::Push { file, config, .. } }
                if file == Path::new("rec.wasm") && config == Path::new("z.toml")
        ));
        let cli = Cli::try_parse_from(["zoomhost", "plugin", "remove", "rec"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Plugin { action: PluginAction::Remove { name, config } }
                if name == "rec" && config == Path::new("zoomhost.toml")
        ));
        assert!(Cli::try_parse_from(["zoomhost", "plugin", "list"]).is_ok());
        assert!(Cli::try_parse_from(["zoomhost", "plugin", "push"]).is_err());
    }

    #[tokio::test]
    async fn plugin_commands_explain_a_missing_section_and_an_unreachable_nats() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.toml");
        std::fs::write(&plain, "").unwrap();
        let err = plugin_command(PluginAction::List { config: plain })
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("no [cluster] section"),
            "{err:#}"
        );

        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("nats://127.0.0.1:{port}");
        let config = dir.path().join("cluster.toml");
        std::fs::write(
            &config,
            format!("[cluster]\nnats_url = \"{url}\"\nrole = \"worker\"\n"),
        )
        .unwrap();
        let err = plugin_command(PluginAction::Remove {
            name: "rec".into(),
            config,
        })
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains(&url), "{err:#}");
    }
}
