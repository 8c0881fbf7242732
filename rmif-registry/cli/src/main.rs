//! `rmif`: the registry's command-line client, in the spirit of zkCli and etcdctl.
//!
//! ```text
//! rmif [--servers host:port,…] [--json] [--session-timeout MS] COMMAND
//!
//! rmif create [--ephemeral [--hold]] [--sequential] PATH [DATA]
//! rmif get [--stale] PATH | set PATH DATA [--version V] | delete PATH [--version V]
//! rmif ls PATH | stat PATH | sync | status
//! rmif watch [--recursive] PATH
//! rmif alerts [--last N]
//! ```
//!
//! Output is for people unless `--json`, which prints one JSON object per result. Errors go to
//! stderr with exit code 1 (2 for a usage error).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rmif_registry::Stat;
use rmif_registry::api::WatchMode;
use rmif_registry::{
    ClientOptions, Consistency, CreateMode, RegistryClient, RegistryError, SessionState,
};
use serde_json::json;

/// Command-line client of the rmif registry.
#[derive(Debug, Parser)]
#[command(name = "rmif", version)]
struct Cli {
    /// Client addresses of registry members, comma-separated.
    #[arg(
        long,
        env = "RMIF_SERVERS",
        default_value = "127.0.0.1:7000",
        value_delimiter = ','
    )]
    servers: Vec<String>,
    /// Print one JSON object per result.
    #[arg(long)]
    json: bool,
    /// Give up on an operation after this many milliseconds (failovers included).
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    timeout: u64,
    /// Timeout of the session opened for ephemeral nodes, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    session_timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node.
    Create {
        /// Delete the node when this command's session ends (at exit with --hold, else when the
        /// session times out).
        #[arg(long)]
        ephemeral: bool,
        /// Keep the session (and so the ephemeral node) alive until interrupted or killed.
        #[arg(long, requires = "ephemeral")]
        hold: bool,
        /// Append a 10-digit sequence number to the name.
        #[arg(long)]
        sequential: bool,
        /// Path of the node (the name prefix, for a sequential node).
        path: String,
        /// Its data.
        data: Option<String>,
    },
    /// Print a node's data.
    Get {
        /// Read this member's state without confirming it with a quorum.
        #[arg(long)]
        stale: bool,
        /// Path of the node.
        path: String,
    },
    /// Replace a node's data.
    Set {
        /// Path of the node.
        path: String,
        /// New data.
        data: String,
        /// Only if the node is at this version.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Delete a node.
    Delete {
        /// Path of the node.
        path: String,
        /// Only if the node is at this version.
        #[arg(long)]
        version: Option<u32>,
    },
    /// List a node's children.
    Ls {
        /// Path of the node.
        path: String,
    },
    /// Print a node's stat.
    Stat {
        /// Path of the node.
        path: String,
    },
    /// Wait until the member has applied everything committed (a quorum barrier).
    Sync,
    /// Show every member: id, address, role, term, commit and applied index, reachability.
    Status,
    /// Show the registry's provider alerts (kept by the leader with `Monitor_log=true`): each
    /// time a provider became unavailable or available again, oldest first.
    Alerts {
        /// Only the last N.
        #[arg(long, value_name = "N")]
        last: Option<usize>,
    },
    /// Print every change of a node, one line each, until interrupted.
    Watch {
        /// Every change anywhere under the node, not just the node and its children list.
        #[arg(long)]
        recursive: bool,
        /// Path of the node.
        path: String,
    },
}

impl Command {
    /// The node the command is about, if any.
    fn path(&self) -> Option<&str> {
        match self {
            Command::Create { path, .. }
            | Command::Get { path, .. }
            | Command::Set { path, .. }
            | Command::Delete { path, .. }
            | Command::Ls { path }
            | Command::Stat { path }
            | Command::Watch { path, .. } => Some(path),
            Command::Sync | Command::Status | Command::Alerts { .. } => None,
        }
    }
}

fn resolve_servers(servers: &[String]) -> Result<Vec<SocketAddr>, String> {
    servers
        .iter()
        .map(|s| rmif_core::config::resolve_addr(s.trim()))
        .collect()
}

fn stat_json(stat: &Stat) -> serde_json::Value {
    serde_json::to_value(stat).unwrap_or_default()
}

fn data_json(data: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(data) {
        Ok(text) => json!(text),
        Err(_) => json!(data),
    }
}

fn print_stat(stat: &Stat) {
    println!("czxid = {}", stat.czxid);
    println!("mzxid = {}", stat.mzxid);
    println!("pzxid = {}", stat.pzxid);
    println!("ctime_ms = {}", stat.ctime_ms);
    println!("mtime_ms = {}", stat.mtime_ms);
    println!("version = {}", stat.version);
    println!("cversion = {}", stat.cversion);
    println!("ephemeral_owner = {:#x}", stat.ephemeral_owner);
    println!("data_length = {}", stat.data_length);
    println!("num_children = {}", stat.num_children);
}

async fn run(cli: Cli) -> Result<(), RegistryError> {
    let servers = resolve_servers(&cli.servers).map_err(RegistryError::BadRequest)?;
    let options = ClientOptions {
        timeout: Duration::from_millis(cli.timeout),
        ..ClientOptions::default()
    };
    let client = RegistryClient::new(&servers, options);
    let json = cli.json;
    match cli.command {
        Command::Create {
            ephemeral,
            hold,
            sequential,
            path,
            data,
        } => {
            let mode = CreateMode {
                ephemeral,
                sequential,
            };
            let data = data.unwrap_or_default();
            let session = if ephemeral {
                Some(
                    client
                        .open_session(Duration::from_millis(cli.session_timeout))
                        .await?,
                )
            } else {
                None
            };
            let created = match &session {
                Some(session) => session.create(&path, data.as_bytes(), mode).await?,
                None => client.create(&path, data.as_bytes(), mode).await?,
            };
            if json {
                println!(
                    "{}",
                    json!({"path": created.path, "zxid": created.zxid, "stat": stat_json(&created.stat)})
                );
            } else {
                println!("created {}", created.path);
            }
            if let Some(session) = session {
                if hold {
                    hold_session(session).await?;
                } else {
                    eprintln!(
                        "rmif: {} lives until this command's session times out ({} ms); use --hold to keep it",
                        created.path,
                        session.timeout().as_millis()
                    );
                    drop(session);
                }
            }
        }
        Command::Watch { recursive, path } => {
            let mode = if recursive {
                WatchMode::Recursive
            } else {
                WatchMode::Persistent
            };
            watch(&client, &path, mode, json).await?;
        }
        Command::Get { stale, path } => {
            let consistency = if stale {
                Consistency::Stale
            } else {
                Consistency::Linearizable
            };
            let node = client.get(&path, consistency).await?;
            if json {
                println!(
                    "{}",
                    json!({"path": path, "data": data_json(&node.data), "zxid": node.zxid, "stat": stat_json(&node.stat)})
                );
            } else {
                println!("{}", String::from_utf8_lossy(&node.data));
            }
        }
        Command::Set {
            path,
            data,
            version,
        } => {
            let written = client.set(&path, data.as_bytes(), version).await?;
            let stat = written.stat.unwrap_or_default();
            if json {
                println!(
                    "{}",
                    json!({"path": path, "zxid": written.zxid, "stat": stat_json(&stat)})
                );
            } else {
                println!("set {path} (version {})", stat.version);
            }
        }
        Command::Delete { path, version } => {
            let written = client.delete(&path, version).await?;
            if json {
                println!(
                    "{}",
                    json!({"path": path, "deleted": true, "zxid": written.zxid})
                );
            } else {
                println!("deleted {path}");
            }
        }
        Command::Ls { path } => {
            let list = client.children(&path, Consistency::Linearizable).await?;
            if json {
                println!(
                    "{}",
                    json!({"path": path, "children": list.children, "zxid": list.zxid})
                );
            } else {
                for child in list.children {
                    println!("{child}");
                }
            }
        }
        Command::Stat { path } => {
            let stat = client.stat(&path, Consistency::Linearizable).await?;
            if json {
                println!(
                    "{}",
                    json!({"path": path, "zxid": stat.zxid, "stat": stat_json(&stat.stat)})
                );
            } else {
                print_stat(&stat.stat);
            }
        }
        Command::Sync => {
            let synced = client.sync().await?;
            if json {
                println!("{}", json!({"synced": true, "zxid": synced.zxid}));
            } else {
                println!("synced (zxid {})", synced.zxid);
            }
        }
        Command::Status => status(&client, json).await,
        Command::Alerts { last } => {
            let kept = rmif_registry::discovery::alerts(&client).await?;
            let shown = &kept[kept.len().saturating_sub(last.unwrap_or(kept.len()))..];
            print_alerts(shown, json);
        }
    }
    Ok(())
}

/// One line per alert: for people, its time (UTC), kind, service, address, reason and how long
/// the provider was down; with `--json`, one object each.
fn print_alerts(alerts: &[rmif_registry::discovery::Alert], json: bool) {
    use rmif_registry::discovery::AlertKind;
    if json {
        for alert in alerts {
            println!("{}", serde_json::to_value(alert).unwrap_or_default());
        }
        return;
    }
    if alerts.is_empty() {
        eprintln!("rmif: no alerts (the registry keeps them with Monitor_log=true)");
        return;
    }
    for alert in alerts {
        let (kind, down) = match alert.kind {
            AlertKind::Unavailable => ("UNAVAILABLE", String::new()),
            AlertKind::Available => ("AVAILABLE", format!(" (down {} ms)", alert.down_ms)),
        };
        println!(
            "{} {kind:<11} {} {} {}{down}",
            utc(alert.at_ms),
            alert.service,
            alert.address,
            alert.reason
        );
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn utc(ms: u64) -> String {
    let (days, in_day) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// Keeps the session alive until Ctrl-C or SIGTERM (then closes it, deleting its ephemeral
/// nodes) or until the registry expires it.
async fn hold_session(session: rmif_registry::Session) -> Result<(), RegistryError> {
    let mut states = session.states();
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| RegistryError::BadRequest(format!("cannot handle SIGTERM: {e}")))?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            changed = states.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = *states.borrow_and_update();
                eprintln!("rmif: session {:#x} is {state:?}", session.id());
                if state == SessionState::Expired {
                    return Err(RegistryError::SessionExpired { session: session.id() });
                }
            }
        }
    }
    session.close().await
}

/// Prints every change under a watch until interrupted.
async fn watch(
    client: &RegistryClient,
    path: &str,
    mode: WatchMode,
    json: bool,
) -> Result<(), RegistryError> {
    use std::io::Write;
    let mut watcher = client.watch(path, mode).await?;
    let mut stdout = std::io::stdout();
    loop {
        let message = tokio::select! {
            message = watcher.next() => message,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(message) = message else {
            return Ok(());
        };
        let message = message?;
        if message.is_armed() {
            eprintln!("rmif: watching {path} from zxid {}", message.zxid);
            continue;
        }
        if let Some(nodes) = &message.resync {
            if json {
                let nodes: Vec<_> = nodes
                    .iter()
                    .map(|n| json!({"path": n.path, "data": data_json(&n.data), "stat": stat_json(&n.stat)}))
                    .collect();
                let _ = writeln!(
                    stdout,
                    "{}",
                    json!({"type": "resync", "path": path, "zxid": message.zxid, "nodes": nodes})
                );
            } else {
                let _ = writeln!(
                    stdout,
                    "{} resync {} ({} nodes)",
                    message.zxid,
                    path,
                    nodes.len()
                );
            }
        }
        for event in &message.events {
            let kind = match event.kind {
                rmif_registry::ChangeKind::Created => "created",
                rmif_registry::ChangeKind::Deleted => "deleted",
                rmif_registry::ChangeKind::DataChanged => "data_changed",
                rmif_registry::ChangeKind::ChildrenChanged => "children_changed",
            };
            if json {
                let _ = writeln!(
                    stdout,
                    "{}",
                    json!({"type": kind, "path": event.path, "zxid": message.zxid})
                );
            } else {
                let _ = writeln!(stdout, "{} {kind} {}", message.zxid, event.path);
            }
        }
        let _ = stdout.flush();
    }
}

/// One row per member: those in `--servers` are asked directly; members their configuration
/// lists beyond those are shown as known but not contacted.
async fn status(client: &RegistryClient, json: bool) {
    let mut rows = Vec::new();
    let mut known_members: Vec<(u64, String)> = Vec::new();
    for addr in client.servers() {
        match client.member_status(addr).await {
            Ok(member) => {
                for entry in &member.members {
                    if !known_members.contains(entry) {
                        known_members.push(entry.clone());
                    }
                }
                rows.push(json!({
                    "id": member.id,
                    "address": member.client_addr,
                    "peer_address": member.peer_addr,
                    "role": member.role,
                    "term": member.term,
                    "leader": member.leader,
                    "commit": member.commit,
                    "applied": member.applied,
                    "reachable": true,
                }));
            }
            Err(error) => rows.push(json!({
                "id": null,
                "address": addr.to_string(),
                "reachable": false,
                "error": error.to_string(),
            })),
        }
    }
    // Members the configuration lists beyond those given in --servers: their client addresses
    // are unknown here, so they are shown by id (an unreachable server above may be one of
    // them when the counts do not say otherwise).
    if known_members.len() > client.servers().len() {
        for (id, peer_addr) in known_members {
            if !rows.iter().any(|row| row["id"] == json!(id)) {
                rows.push(json!({
                    "id": id,
                    "address": null,
                    "peer_address": peer_addr,
                    "reachable": false,
                    "error": "not contacted: its client address is not in --servers",
                }));
            }
        }
    }
    if json {
        for row in rows {
            println!("{row}");
        }
        return;
    }
    println!(
        "{:<4} {:<22} {:<14} {:>6} {:>10} {:>10} REACHABLE",
        "ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED"
    );
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    for row in rows {
        let reachable = if row["reachable"] == json!(true) {
            "yes".to_owned()
        } else {
            format!("no ({})", text(&row["error"]))
        };
        println!(
            "{:<4} {:<22} {:<14} {:>6} {:>10} {:>10} {}",
            text(&row["id"]),
            text(&row["address"]),
            text(&row["role"]),
            text(&row["term"]),
            text(&row["commit"]),
            text(&row["applied"]),
            reachable
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = cli.command.path().map(str::to_owned);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Every error names the node it is about, even those (no quorum, a lost
            // connection) whose message does not.
            let message = error.to_string();
            match path {
                Some(path) if !message.contains(&path) => eprintln!("rmif: {path}: {message}"),
                _ => eprintln!("rmif: {message}"),
            }
            ExitCode::FAILURE
        }
    }
}
