//! The registry server program: one member of a 1-, 3- or 5-member cluster.
//!
//! ```text
//! rmif-registry --dev                              # single member on 127.0.0.1:7000, temporary data
//! rmif-registry member.properties                  # a member of a cluster
//! rmif-registry member.properties --data-dir /srv/rmif   # any key can be overridden
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rmif_core::config::Properties;
use rmif_registry_server::{RegistryConfig, RegistryServer};

/// A member allocates millions of small objects (tree nodes, log entries) and frees them from
/// other threads; mimalloc does both faster than the system allocator, which shows most in a
/// restart: rebuilding a tree of 500,000 nodes from a snapshot took half the time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs one registry member until SIGTERM or Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "rmif-registry", version)]
struct Args {
    /// Properties file with node_id, peers, client_addr, data_dir (and optional admin_addr,
    /// raft_tick_ms, election_ticks, heartbeat_ticks, snapshot_entries, snapshot_log_mb, and the
    /// provider probes' probe_providers, Tick_time, Again_time, Monitor_log).
    config: Option<PathBuf>,
    /// Start a single member on 127.0.0.1:7000 (or --client-addr) with data in a temporary
    /// directory (or --data-dir). No configuration file needed.
    #[arg(long)]
    dev: bool,
    /// Overrides `node_id`.
    #[arg(long)]
    node_id: Option<String>,
    /// Overrides `peers` (id=host:port,… for every member, this one included).
    #[arg(long)]
    peers: Option<String>,
    /// Overrides `client_addr`.
    #[arg(long)]
    client_addr: Option<String>,
    /// Overrides `admin_addr`.
    #[arg(long)]
    admin_addr: Option<String>,
    /// Overrides `data_dir`.
    #[arg(long)]
    data_dir: Option<String>,
    /// Overrides any other key: `--set snapshot_entries=5000` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl Args {
    fn overrides(&self) -> Result<Vec<(String, String)>, String> {
        let mut overrides = Vec::new();
        let named = [
            ("node_id", &self.node_id),
            ("peers", &self.peers),
            ("client_addr", &self.client_addr),
            ("admin_addr", &self.admin_addr),
            ("data_dir", &self.data_dir),
        ];
        for (key, value) in named {
            if let Some(value) = value {
                overrides.push((key.to_owned(), value.clone()));
            }
        }
        for pair in &self.set {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("--set {pair}: expected KEY=VALUE"))?;
            overrides.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(overrides)
    }
}

fn init_logging() {
    let filter = std::env::var("RMIF_LOG")
        .ok()
        .and_then(|spec| spec.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::INFO)
        });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours for a terminal only: escape codes make log files hard to read.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .try_init();
}

fn configure(args: &Args) -> Result<(RegistryConfig, Option<tempfile::TempDir>), String> {
    let overrides = args.overrides()?;
    if args.dev {
        let mut properties = Properties::empty("--dev");
        properties.set_override("node_id", "1");
        properties.set_override("peers", "1=127.0.0.1:0");
        properties.set_override("client_addr", "127.0.0.1:7000");
        let temporary = if args.data_dir.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("rmif-registry-dev-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary data directory: {e}"))?;
            properties.set_override("data_dir", dir.path().display().to_string());
            Some(dir)
        } else {
            None
        };
        for (key, value) in &overrides {
            properties.set_override(key, value);
        }
        let config = RegistryConfig::from_properties(properties).map_err(|e| e.to_string())?;
        return Ok((config, temporary));
    }
    let config = match &args.config {
        Some(path) => RegistryConfig::load(path, &overrides),
        None => {
            let mut properties = Properties::empty("command line");
            for (key, value) in &overrides {
                properties.set_override(key, value);
            }
            RegistryConfig::from_properties(properties)
        }
    }
    .map_err(|e| e.to_string())?;
    Ok((config, None))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let (config, temporary) = match configure(&args) {
        Ok(configured) => configured,
        Err(error) => {
            eprintln!("rmif-registry: {error}");
            return ExitCode::from(2);
        }
    };
    let data_dir = config.data_dir.clone();
    let node_id = config.node_id;
    let mut server = match RegistryServer::start(config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("rmif-registry: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "rmif-registry member {node_id}: clients on {}, peers on {}, data in {}",
        server.client_addr(),
        server.peer_addr(),
        data_dir.display()
    );
    let code = tokio::select! {
        _ = rmif_core::shutdown_signal() => {
            server.shutdown().await;
            ExitCode::SUCCESS
        }
        error = server.failed() => {
            eprintln!("rmif-registry: stopping: {error}");
            ExitCode::FAILURE
        }
    };
    drop(temporary);
    code
}
