//! `rmif`: the registry's command-line client, in the spirit of zkCli and etcdctl.
//!
//! ```text
//! rmif [--servers host:port,…] [--json] create [--ephemeral] [--sequential] PATH [DATA]
//! rmif get [--stale] PATH | set PATH DATA [--version V] | delete PATH [--version V]
//! rmif ls PATH | stat PATH | sync | status
//! ```
//!
//! Output is for people unless `--json`, which prints one JSON object per result. Errors go to
//! stderr with exit code 1 (2 for a usage error).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rmif_registry::tree::Stat;
use rmif_registry::{ClientOptions, Consistency, CreateMode, RegistryClient, RegistryError};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node.
    Create {
        /// Delete the node when this command's session ends.
        #[arg(long)]
        ephemeral: bool,
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
            sequential,
            path,
            data,
        } => {
            let mode = CreateMode {
                ephemeral,
                sequential,
            };
            let created = client
                .create(&path, data.unwrap_or_default().as_bytes(), mode)
                .await?;
            if json {
                println!(
                    "{}",
                    json!({"path": created.path, "zxid": created.zxid, "stat": stat_json(&created.stat)})
                );
            } else {
                println!("created {}", created.path);
            }
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
    }
    Ok(())
}

/// One row per member: those in `--servers` are asked directly; members they list but that
/// were not given are shown as known but not contacted.
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
    for (id, peer_addr) in known_members {
        if !rows.iter().any(|row| row["id"] == json!(id)) {
            rows.push(json!({
                "id": id,
                "address": null,
                "peer_address": peer_addr,
                "reachable": false,
                "error": "not in --servers, so not contacted",
            }));
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
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rmif: {error}");
            ExitCode::FAILURE
        }
    }
}
