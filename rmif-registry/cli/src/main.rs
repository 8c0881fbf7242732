//! `rmif`: the registry's command-line client, in the spirit of zkCli and etcdctl.
//!
//! ```text
//! rmif [--servers host:port,…] [--json] [--timeout MS] [--fail-fast] [--session-timeout MS] COMMAND
//!
//! rmif create [-p] [--ephemeral [--hold]] [--sequential] PATH [DATA]
//! rmif get [--stale] PATH | set PATH DATA [--version V] | delete PATH [--version V]
//! rmif ls PATH | stat PATH | sync | status
//! rmif watch [--recursive] PATH
//! rmif alerts [--last N]
//! rmif elect NAME [--id ID] -- COMMAND…      (runs COMMAND while leading; $RMIF_LEADER_TOKEN)
//! rmif lock NAME [--wait MS] -- COMMAND…     (runs COMMAND holding the lock; $RMIF_FENCING_TOKEN)
//! rmif config get NAME | set NAME JSON [--version V | --new] | watch NAME
//! ```
//!
//! Output is for people unless `--json`, which prints one JSON object per result. An error goes
//! to stderr as one line (`rmif: PATH: message`), or with `--json` to stdout as one object
//! (`{"error": {"kind", "message", "outcome", "exit_code", …}}`); the exit code says what
//! happened ([`exit`]: did not happen, may have happened, usage).
//!
//! A request that a member cannot serve moves to the other members until `--timeout`, and the
//! first such retry of a request says so on stderr (`rmif: ADDR unreachable (CAUSE); trying the
//! other members for up to 10s`); with `--fail-fast` each member is tried once, and the error
//! names every member and its cause.

mod exit;
mod recipes;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rmif_registry::Stat;
use rmif_registry::api::WatchMode;
use rmif_registry::{
    ClientOptions, Consistency, CreateMode, ErrorKind, FailoverPolicy, OnRetry, RegistryClient,
    RegistryError, SessionState,
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
    /// Try each member once, then fail at once with an error naming every member and its cause
    /// (refused, no answer, no leader), instead of retrying until --timeout: for scripts.
    #[arg(long)]
    fail_fast: bool,
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
        /// Create missing parent nodes first (empty, persistent), as `mkdir -p` does.
        #[arg(short = 'p', long)]
        parents: bool,
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
    /// Stand in election NAME and run COMMAND only while leading it: COMMAND starts once this
    /// process leads (with the leader's token in $RMIF_LEADER_TOKEN) and is killed if the
    /// leadership is lost. Exits with COMMAND's exit code, or 17 if the leadership was lost.
    Elect {
        /// The election's name.
        name: String,
        /// This candidate's id, as other processes see the leader (default: pid-PID).
        #[arg(long)]
        id: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Take fair lock NAME (in line behind earlier requests) and run COMMAND while holding it,
    /// with the grant's fencing token in $RMIF_FENCING_TOKEN; COMMAND is killed if the lock is
    /// lost. Exits with COMMAND's exit code, 16 if not granted within --wait, 17 if lost.
    Lock {
        /// The lock's name.
        name: String,
        /// Give up after this many milliseconds in line.
        #[arg(long, value_name = "MS")]
        wait: Option<u64>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Typed configuration values (JSON): get, set with compare-and-set, watch.
    Config {
        #[command(subcommand)]
        command: recipes::ConfigCommand,
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
            Command::Sync
            | Command::Status
            | Command::Alerts { .. }
            | Command::Elect { .. }
            | Command::Lock { .. }
            | Command::Config { .. } => None,
        }
    }
}

/// Why a command failed.
#[derive(Debug)]
enum Failure {
    /// The command line cannot be used (an unusable `--servers` address).
    Usage(String),
    /// The registry operation failed.
    Registry(RegistryError),
    /// `rmif lock --wait`: not granted in time.
    NotGranted(String),
    /// `rmif elect` / `rmif lock`: the leadership or the lock was lost.
    Lost(String),
    /// `rmif status` found the cluster unhealthy.
    Unhealthy {
        /// [`exit::NO_QUORUM`], [`exit::UNREACHABLE`] or [`exit::DEGRADED`].
        code: u8,
        /// What is wrong, naming the members.
        message: String,
        /// The addresses of the members that did not answer.
        unreachable: Vec<String>,
    },
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Self {
        Failure::Registry(error)
    }
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => exit::USAGE,
            Failure::NotGranted(_) => exit::NOT_GRANTED,
            Failure::Lost(_) => exit::LOST,
            Failure::Registry(error) => exit::for_kind(error.kind()),
            Failure::Unhealthy { code, .. } => *code,
        }
    }

    /// The `kind` its JSON form gives: the error kind's name, `usage`, or for an unhealthy
    /// cluster `no_quorum`, `unreachable` or `degraded`.
    fn kind(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::NotGranted(_) => "not_granted",
            Failure::Lost(_) => "lost",
            Failure::Registry(error) => error.kind().as_str(),
            Failure::Unhealthy { code, .. } => match *code {
                exit::NO_QUORUM => ErrorKind::NoQuorum.as_str(),
                exit::UNREACHABLE => ErrorKind::Unreachable.as_str(),
                _ => "degraded",
            },
        }
    }

    /// The message, naming `path` (the node the command is about) if it does not already: even
    /// errors such as "no quorum" or a lost connection, whose message does not.
    fn message(&self, path: Option<&str>) -> String {
        let message = match self {
            Failure::Usage(message)
            | Failure::NotGranted(message)
            | Failure::Lost(message)
            | Failure::Unhealthy { message, .. } => message.clone(),
            Failure::Registry(error) => error.to_string(),
        };
        match path {
            Some(path) if matches!(self, Failure::Registry(_)) && !message.contains(path) => {
                format!("{path}: {message}")
            }
            _ => message,
        }
    }

    /// The `--json` form: `{"error": {...}}`.
    fn to_json(&self, path: Option<&str>) -> serde_json::Value {
        let mut error = json!({
            "kind": self.kind(),
            "message": self.message(path),
            "exit_code": self.exit_code(),
        });
        match self {
            Failure::Registry(registry) => {
                error["outcome"] = json!(registry.outcome().as_str());
                if let Some(path) = path {
                    error["path"] = json!(path);
                }
            }
            Failure::Usage(_) | Failure::NotGranted(_) => error["outcome"] = json!("not_applied"),
            // The command may have done part of its work.
            Failure::Lost(_) => error["outcome"] = json!("unknown"),
            Failure::Unhealthy { unreachable, .. } => error["unreachable"] = json!(unreachable),
        }
        json!({ "error": error })
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

/// Runs the command; returns the exit code of a command it ran for the user (`elect`,
/// `lock`), else 0.
async fn run(cli: Cli) -> Result<u8, Failure> {
    let servers = resolve_servers(&cli.servers).map_err(Failure::Usage)?;
    let options = ClientOptions {
        timeout: Duration::from_millis(cli.timeout),
        failover: if cli.fail_fast {
            FailoverPolicy::OnePass
        } else {
            FailoverPolicy::UntilDeadline
        },
        // A wait for the other members is never silent; on stderr, so that stdout stays the
        // results (all JSON with --json). One pass is short and its error names every member.
        on_retry: (!cli.fail_fast).then(|| OnRetry::new(|notice| eprintln!("rmif: {notice}"))),
        ..ClientOptions::default()
    };
    let client = RegistryClient::new(&servers, options);
    let json = cli.json;
    match cli.command {
        Command::Create {
            ephemeral,
            hold,
            sequential,
            parents,
            path,
            data,
        } => {
            if parents {
                client
                    .create_path(rmif_registry::path::parent(&path))
                    .await?;
            }
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
        Command::Status => status(&client, json).await?,
        Command::Alerts { last } => {
            let kept = rmif_registry::discovery::alerts(&client).await?;
            let shown = &kept[kept.len().saturating_sub(last.unwrap_or(kept.len()))..];
            print_alerts(shown, json);
        }
        Command::Elect { name, id, command } => {
            let timeout = Duration::from_millis(cli.session_timeout);
            return recipes::elect(&client, timeout, &name, id, &command).await;
        }
        Command::Lock {
            name,
            wait,
            command,
        } => {
            let timeout = Duration::from_millis(cli.session_timeout);
            let wait = wait.map(Duration::from_millis);
            return recipes::lock(&client, timeout, &name, wait, &command).await;
        }
        Command::Config { command } => recipes::config(&client, command, json).await?,
    }
    Ok(0)
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

/// The role a status row shows: the member's Raft role, except that a follower that knows no
/// leader says so instead of calling itself a follower.
fn shown_role(role: &str, leader: u64) -> String {
    if leader == 0 && role == "follower" {
        "no leader".to_owned()
    } else {
        role.to_owned()
    }
}

/// What `rmif status` concludes from the members it asked: `None` when every one answered and
/// all name the same leader.
fn verdict(rows: &[serde_json::Value]) -> Option<Failure> {
    let asked: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["asked"] == json!(true)).collect();
    let unreachable: Vec<String> = asked
        .iter()
        .filter(|r| r["reachable"] != json!(true))
        .map(|r| r["address"].as_str().unwrap_or("?").to_owned())
        .collect();
    let answered: Vec<&&serde_json::Value> = asked
        .iter()
        .filter(|r| r["reachable"] == json!(true))
        .collect();
    let leaders: std::collections::BTreeSet<u64> = answered
        .iter()
        .filter_map(|r| r["leader"].as_u64())
        .filter(|leader| *leader != 0)
        .collect();
    let leaderless: Vec<String> = answered
        .iter()
        .filter(|r| r["leader"].as_u64() == Some(0))
        .map(|r| {
            format!(
                "member {} ({})",
                r["id"],
                r["address"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let down = if unreachable.is_empty() {
        String::new()
    } else {
        format!("unreachable: {}", unreachable.join(", "))
    };
    let (code, message) = if answered.is_empty() {
        (exit::UNREACHABLE, format!("no member answered; {down}"))
    } else if leaders.is_empty() {
        let mut message = "no leader: no reachable member knows one".to_owned();
        if !down.is_empty() {
            message.push_str("; ");
            message.push_str(&down);
        }
        (exit::NO_QUORUM, message)
    } else {
        let mut problems = Vec::new();
        if !down.is_empty() {
            problems.push(down);
        }
        if !leaderless.is_empty() {
            problems.push(format!("knows no leader: {}", leaderless.join(", ")));
        }
        if leaders.len() > 1 {
            problems.push(format!("members name different leaders: {leaders:?}"));
        }
        if problems.is_empty() {
            return None;
        }
        (exit::DEGRADED, format!("degraded: {}", problems.join("; ")))
    };
    Some(Failure::Unhealthy {
        code,
        message,
        unreachable,
    })
}

/// One row per member: those in `--servers` are asked directly; members their configuration
/// lists beyond those are shown as known but not contacted. Fails (see [`verdict`]) when a
/// member asked is unreachable or there is no leader.
async fn status(client: &RegistryClient, json: bool) -> Result<(), Failure> {
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
                    "role": shown_role(&member.role, member.leader),
                    "term": member.term,
                    "leader": member.leader,
                    "commit": member.commit,
                    "applied": member.applied,
                    "reachable": true,
                    "asked": true,
                }));
            }
            Err(error) => rows.push(json!({
                "id": null,
                "address": addr.to_string(),
                "reachable": false,
                "asked": true,
                "error": error.to_string(),
            })),
        }
    }
    // Members the configuration lists beyond those given in --servers: their client addresses
    // are unknown here, so they are shown by id (an unreachable server above may be one of
    // them when the counts do not say otherwise). They are not asked, so they do not count
    // against the cluster's health.
    if known_members.len() > client.servers().len() {
        for (id, peer_addr) in known_members {
            if !rows.iter().any(|row| row["id"] == json!(id)) {
                rows.push(json!({
                    "id": id,
                    "address": null,
                    "peer_address": peer_addr,
                    "reachable": false,
                    "asked": false,
                    "error": "not contacted: its client address is not in --servers",
                }));
            }
        }
    }
    let verdict = verdict(&rows);
    if json {
        for row in rows {
            println!("{row}");
        }
    } else {
        print_status_table(&rows);
    }
    match verdict {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

fn print_status_table(rows: &[serde_json::Value]) {
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

/// Parses the command line; a usage error with `--json` among the arguments is reported as a
/// JSON error object (else as clap prints it), with clap's exit code 2.
fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(error) => {
            let wants_json = std::env::args_os().any(|arg| arg == "--json");
            if !wants_json || !error.use_stderr() {
                // --help and --version (stdout, code 0) and usage errors without --json.
                error.exit();
            }
            let message = error.render().to_string();
            let failure = Failure::Usage(message.trim_end().to_owned());
            println!("{}", failure.to_json(None));
            Err(ExitCode::from(exit::USAGE))
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let path = cli.command.path().map(str::to_owned);
    let json = cli.json;
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            if json {
                println!("{}", failure.to_json(path.as_deref()));
            } else {
                eprintln!("rmif: {}", failure.message(path.as_deref()));
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(id: u64, leader: u64) -> serde_json::Value {
        json!({"id": id, "address": format!("10.0.0.{id}:7000"), "leader": leader,
               "reachable": true, "asked": true})
    }

    fn down(id: u64) -> serde_json::Value {
        json!({"id": null, "address": format!("10.0.0.{id}:7000"), "reachable": false,
               "asked": true, "error": "refused"})
    }

    fn code(rows: &[serde_json::Value]) -> Option<(u8, String)> {
        verdict(rows).map(|failure| (failure.exit_code(), failure.message(None)))
    }

    #[test]
    fn status_is_healthy_only_when_every_member_asked_names_the_same_leader() {
        assert!(code(&[answered(1, 2), answered(2, 2), answered(3, 2)]).is_none());
        // A member listed by the others' configuration but not asked does not count.
        let not_asked = json!({"id": 4, "address": null, "reachable": false, "asked": false});
        assert!(code(&[answered(1, 1), not_asked]).is_none());
    }

    #[test]
    fn status_names_what_is_wrong() {
        let (exit, message) = code(&[answered(1, 2), answered(2, 2), down(3)]).unwrap();
        assert_eq!(exit, exit::DEGRADED);
        assert!(message.contains("10.0.0.3:7000"), "{message}");

        let (exit, message) = code(&[answered(1, 2), answered(2, 2), answered(3, 0)]).unwrap();
        assert_eq!(exit, exit::DEGRADED);
        assert!(message.contains("knows no leader: member 3"), "{message}");

        let (exit, message) = code(&[answered(1, 1), answered(2, 2)]).unwrap();
        assert_eq!(exit, exit::DEGRADED);
        assert!(message.contains("different leaders"), "{message}");

        let (exit, message) = code(&[answered(1, 0), down(2), down(3)]).unwrap();
        assert_eq!(exit, exit::NO_QUORUM);
        assert!(message.starts_with("no leader"), "{message}");

        let (exit, _) = code(&[down(1), down(2)]).unwrap();
        assert_eq!(exit, exit::UNREACHABLE);
    }

    #[test]
    fn a_follower_without_a_leader_is_shown_as_such() {
        assert_eq!(shown_role("follower", 0), "no leader");
        assert_eq!(shown_role("follower", 2), "follower");
        assert_eq!(shown_role("pre-candidate", 0), "pre-candidate");
        assert_eq!(shown_role("leader", 1), "leader");
    }
}
