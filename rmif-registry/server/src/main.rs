//! The registry server program: one member of a 1-, 3- or 5-member cluster.
//!
//! ```text
//! rmif-registry --dev                              # single member on 127.0.0.1:7000, temporary data
//! rmif-registry member.properties                  # a member of a cluster
//! rmif-registry member.properties --data-dir /srv/rmif   # any key can be overridden
//! rmif-registry member.properties --log-format json     # one JSON object per log line
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rmif_core::config::Properties;
use rmif_registry_server::{LogFormat, RegistryConfig, RegistryServer};

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
    /// raft_tick_ms, election_ticks, heartbeat_ticks, snapshot_entries, snapshot_log_mb,
    /// log_format, and the provider probes' probe_providers, Tick_time, Again_time, Monitor_log).
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
    /// Overrides `log_format`: `text` (the default) or `json` (one JSON object per line).
    #[arg(long, env = "RMIF_LOG_FORMAT", value_name = "text|json")]
    log_format: Option<String>,
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
            ("log_format", &self.log_format),
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

/// Logs to stderr in `format`, at the levels `RMIF_LOG` names (INFO by default).
fn init_logging(format: LogFormat) {
    let filter = std::env::var("RMIF_LOG")
        .ok()
        .and_then(|spec| spec.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::INFO)
        });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colours for a terminal only: escape codes make log files hard to read.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    // The event's fields at the top level, beside `timestamp`, `level`, `target` and
    // `message`: what log collectors index without a mapping.
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
    });
    let _ = tracing_subscriber::registry()
        .with(text)
        .with(json)
        .with(filter)
        .try_init();
}

/// `error` followed by each of its causes ("cannot listen for clients on …: Address already in
/// use"): the cause is what an operator acts on.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Says why the member stops: an error line in the log format asked for (in JSON, so that a
/// collector sees it), plain text on stderr otherwise.
fn report(format: LogFormat, error: &dyn std::fmt::Display) {
    match format {
        LogFormat::Json => tracing::error!(%error, "rmif-registry stopping"),
        LogFormat::Text => eprintln!("rmif-registry: {error}"),
    }
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

/// How long the exit waits for work still running on the runtime's blocking threads once the
/// member has stopped: a snapshot being serialized, which can take seconds on a large tree and
/// is not needed (the log holds everything it would), must not hold SIGTERM up.
const BLOCKING_WORK_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    // Before the runtime and its threads allocate: see the function's documentation.
    let huge_pages = rmif_registry_server::disable_transparent_huge_pages();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rmif-registry: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(huge_pages));
    runtime.shutdown_timeout(BLOCKING_WORK_GRACE);
    code
}

/// Runs the member until SIGTERM or Ctrl-C (exit status 0), or until it fails.
async fn run(huge_pages: std::io::Result<()>) -> ExitCode {
    let args = Args::parse();
    // Before the configuration is read, there is no log format yet: its errors are plain text.
    let (config, temporary) = match configure(&args) {
        Ok(configured) => configured,
        Err(error) => {
            eprintln!("rmif-registry: {error}");
            return ExitCode::from(2);
        }
    };
    let format = config.log_format;
    init_logging(format);
    if let Err(error) = huge_pages {
        tracing::warn!(%error, "transparent huge pages could not be turned off; writes may stall for milliseconds while the kernel zeroes 2 MiB pages");
    }
    let data_dir = config.data_dir.clone();
    let node_id = config.node_id;
    let mut server = match RegistryServer::start(config).await {
        Ok(server) => server,
        Err(error) => {
            report(format, &with_causes(&error));
            return ExitCode::FAILURE;
        }
    };
    // In JSON, every line of the output is an object: the "registry member started" log line
    // says the same.
    if format == LogFormat::Text {
        println!(
            "rmif-registry member {node_id}: clients on {}, peers on {}, data in {}",
            server.client_addr(),
            server.peer_addr(),
            data_dir.display()
        );
    }
    let code = tokio::select! {
        _ = rmif_core::shutdown_signal() => {
            server.shutdown().await;
            ExitCode::SUCCESS
        }
        error = server.failed() => {
            report(format, &format_args!("stopping: {}", with_causes(&error)));
            ExitCode::FAILURE
        }
    };
    drop(temporary);
    code
}
