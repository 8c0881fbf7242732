//! `rmif elect`, `rmif lock` and `rmif config`: the registry's recipes from a shell, in the
//! spirit of `etcdctl elect` and `etcdctl lock`.
//!
//! `elect` and `lock` run a command only while this process leads or holds the lock, with the
//! token in the command's environment, and stop it (SIGKILL: it must not act a moment longer)
//! as soon as the leadership or the lock may have passed to someone else.

use std::sync::Arc;
use std::time::Duration;

use rmif_registry::recipes::config::{ConfigCenter, ConfigError, Expect};
use rmif_registry::recipes::election::Election;
use rmif_registry::recipes::lock::FairLock;
use rmif_registry::{RegistryClient, RegistryError};
use serde_json::json;

use crate::Failure;

/// The environment variable holding the leader's token for the command `rmif elect` runs.
pub(crate) const LEADER_TOKEN: &str = "RMIF_LEADER_TOKEN";
/// The environment variable holding the fencing token for the command `rmif lock` runs.
pub(crate) const FENCING_TOKEN: &str = "RMIF_FENCING_TOKEN";

/// `rmif elect NAME -- COMMAND…`: waits to lead election `name`, then runs `command` while
/// leading. Returns the command's exit code, or [`crate::exit::LOST`] if leadership was lost first.
pub(crate) async fn elect(
    client: &RegistryClient,
    session_timeout: Duration,
    name: &str,
    id: Option<String>,
    command: &[String],
) -> Result<u8, Failure> {
    let session = Arc::new(client.open_session(session_timeout).await?);
    let id = id.unwrap_or_else(|| format!("pid-{}", std::process::id()));
    let mut candidacy = Election::new(session.clone(), name)
        .await?
        .campaign(&id)
        .await?;
    eprintln!("rmif: {id} stands for {name}");
    let token = match candidacy.leading().await {
        Ok(token) => token,
        Err(lost) => {
            return Err(Failure::Lost(format!(
                "{name}: {lost} before leading; the command did not run"
            )));
        }
    };
    eprintln!("rmif: {id} leads {name} (token {token})");
    let code = run_while(command, LEADER_TOKEN, token, candidacy.lost(), name).await?;
    // Done: the next candidate may lead.
    let _ = candidacy.resign().await;
    let _ = session.close().await;
    Ok(code)
}

/// `rmif lock NAME -- COMMAND…`: waits (at most `wait`) for lock `name`, then runs `command`
/// while holding it. Returns the command's exit code, [`crate::exit::NOT_GRANTED`] if the lock was not
/// granted in time, or [`crate::exit::LOST`] if it was lost while the command ran.
pub(crate) async fn lock(
    client: &RegistryClient,
    session_timeout: Duration,
    name: &str,
    wait: Option<Duration>,
    command: &[String],
) -> Result<u8, Failure> {
    let session = Arc::new(client.open_session(session_timeout).await?);
    let lock = FairLock::new(session, name).await?;
    let guard = match wait {
        None => lock.lock().await?,
        Some(wait) => match lock.lock_timeout(wait).await? {
            Some(guard) => guard,
            None => {
                return Err(Failure::NotGranted(format!(
                    "{name}: not granted within {} ms; the command did not run",
                    wait.as_millis()
                )));
            }
        },
    };
    let token = guard.token();
    eprintln!("rmif: holding {name} (fencing token {token})");
    let code = run_while(command, FENCING_TOKEN, token, guard.lost(), name).await?;
    guard.unlock().await?;
    Ok(code)
}

/// Runs `command` with `token` in its environment as `variable` until it exits (its exit code)
/// or `lost` resolves (the command is killed; [`Failure::Lost`]).
async fn run_while(
    command: &[String],
    variable: &str,
    token: u64,
    lost: impl Future<Output = String>,
    name: &str,
) -> Result<u8, Failure> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::Usage("no command given after --".to_owned()))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env(variable, token.to_string())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| Failure::Usage(format!("cannot run {program}: {error}")))?;
    tokio::select! {
        status = child.wait() => {
            let status = status.map_err(|error| Failure::Usage(format!("waiting for {program}: {error}")))?;
            // A command killed by a signal exits 128 + the signal, as a shell reports it.
            Ok(status.code().map_or_else(
                || 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0) as u8,
                |code| code as u8,
            ))
        }
        reason = lost => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(Failure::Lost(format!("{name}: {reason}; stopped {program} (SIGKILL)")))
        }
    }
}

/// What `rmif config` does.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print a value (its JSON) and its version.
    Get {
        /// The value's name.
        name: String,
    },
    /// Publish a value (JSON text).
    Set {
        /// The value's name.
        name: String,
        /// The value, as JSON (`'{"max_connections": 200}'`, `42`, `'"text"'`).
        value: String,
        /// Only over this version (compare-and-set); `--new` for a value that must not exist.
        #[arg(long, conflicts_with = "new")]
        version: Option<u32>,
        /// Only if the value does not exist yet.
        #[arg(long)]
        new: bool,
    },
    /// Print the value, then every new value as it is published, until interrupted.
    Watch {
        /// The value's name.
        name: String,
    },
}

/// Runs `rmif config …`.
pub(crate) async fn config(
    client: &RegistryClient,
    command: ConfigCommand,
    json: bool,
) -> Result<(), Failure> {
    let center = ConfigCenter::new(client.clone());
    match command {
        ConfigCommand::Get { name } => {
            let value = center
                .get::<serde_json::Value>(&name)
                .await
                .map_err(config_failure)?
                .ok_or_else(|| {
                    Failure::Registry(RegistryError::NoNode {
                        path: format!("{}/{name}", rmif_registry::recipes::config::CONFIG_PATH),
                    })
                })?;
            print_value(&name, &value.value, value.version, json);
        }
        ConfigCommand::Set {
            name,
            value,
            version,
            new,
        } => {
            let parsed: serde_json::Value = serde_json::from_str(&value).map_err(|error| {
                Failure::Usage(format!("the value is not JSON ({error}): {value}"))
            })?;
            let expect = match (version, new) {
                (Some(version), _) => Expect::Version(version),
                (None, true) => Expect::Absent,
                (None, false) => Expect::Any,
            };
            let version = center
                .publish(&name, &parsed, expect)
                .await
                .map_err(config_failure)?;
            if json {
                println!("{}", json!({"name": name, "version": version}));
            } else {
                println!("set {name} (version {version})");
            }
        }
        ConfigCommand::Watch { name } => {
            let mut subscription = center
                .subscribe::<serde_json::Value>(&name)
                .await
                .map_err(config_failure)?;
            if let Some(value) = subscription.current() {
                print_value(&name, &value.value, value.version, json);
            }
            loop {
                let value = tokio::select! {
                    value = subscription.changed() => value,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                };
                match value {
                    Some(value) => print_value(&name, &value.value, value.version, json),
                    None if json => println!("{}", json!({"name": name, "deleted": true})),
                    None => println!("{name} deleted"),
                }
            }
        }
    }
    Ok(())
}

fn print_value(name: &str, value: &serde_json::Value, version: u32, json: bool) {
    if json {
        println!(
            "{}",
            json!({"name": name, "version": version, "value": value})
        );
    } else {
        println!("{name} (version {version}) = {value}");
    }
}

fn config_failure(error: ConfigError) -> Failure {
    match error {
        ConfigError::Registry(error) => Failure::Registry(error),
        other => Failure::Usage(other.to_string()),
    }
}
