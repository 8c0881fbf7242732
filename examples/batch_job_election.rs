//! A batch job on three machines, of which only one may run it at a time: each machine (a
//! process of its own) stands in an election and runs batches only while it leads, recording
//! each batch in the registry with its leader token. The leading machine is killed with
//! SIGKILL after two batches; once the registry expires its session, the next machine in line
//! leads and carries on from the last recorded batch.
//!
//! `cargo run --example batch_job_election` (an embedded registry), or
//! `cargo run --example batch_job_election -- 127.0.0.1:7000` (a running one).

use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use rmif_registry::recipes::election::{Election, Leadership};
use rmif_registry::{Consistency, CreateMode, RegistryClient, RegistryError};
use rmif_suite::ExampleRegistry;

/// Batches of the job.
const BATCHES: u32 = 6;
/// Where the job records the batches done.
const PROGRESS: &str = "/nightly-batch-progress";
/// A machine's session timeout: how long a dead leader blocks the job at most.
const SESSION: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rmif_suite::init_logging();
    if let Some((name, client)) = rmif_suite::worker_role()? {
        return machine(&name, client).await;
    }

    let registry = ExampleRegistry::from_args().await?;
    let client = registry.client();
    match client.create(PROGRESS, b"0", CreateMode::PERSISTENT).await {
        Ok(_) => {}
        Err(RegistryError::NodeExists { .. }) => {
            client.set(PROGRESS, b"0", None).await?;
        }
        Err(error) => return Err(error.into()),
    }
    let mut machines: Vec<(&str, Child)> = Vec::new();
    for name in ["machine-1", "machine-2", "machine-3"] {
        let child = registry.worker_command(name)?.spawn()?;
        machines.push((name, child));
        // One after the other, so that they stand in this order.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let mut killed = false;
    loop {
        let done = progress(&client).await?.0;
        if done >= 2 && !killed {
            let (name, leader) = &mut machines[0];
            leader.kill()?;
            leader.wait()?;
            println!("{name}   killed with SIGKILL after batch {done}");
            killed = true;
        }
        if done >= BATCHES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (_, machine) in &mut machines {
        let _ = machine.kill();
        let _ = machine.wait();
    }
    println!("all {BATCHES} batches ran, each once, by one machine at a time");
    Ok(())
}

/// Batches done, and the progress node's version.
async fn progress(client: &RegistryClient) -> Result<(u32, u32), Box<dyn std::error::Error>> {
    let node = client.get(PROGRESS, Consistency::Linearizable).await?;
    Ok((std::str::from_utf8(&node.data)?.parse()?, node.stat.version))
}

/// One machine: stands, and while it leads runs the next batch and records it.
async fn machine(name: &str, client: RegistryClient) -> Result<(), Box<dyn std::error::Error>> {
    let session = Arc::new(client.open_session(SESSION).await?);
    let election = Election::new(session, "nightly-batch").await?;
    let mut candidacy = election.campaign(name).await?;
    println!("{name}   stands for nightly-batch");
    let token = candidacy.leading().await?;
    println!("{name}   leads (token {token})");
    loop {
        if let Leadership::Lost { reason } = candidacy.state() {
            println!("{name}   stops running the job: {reason}");
            return Ok(());
        }
        let (done, version) = progress(&client).await?;
        if done >= BATCHES {
            candidacy.resign().await?;
            return Ok(());
        }
        // The batch's work.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Recorded only over the progress this leader read: a write from an old leader fails.
        let batch = done + 1;
        client
            .set(PROGRESS, batch.to_string().as_bytes(), Some(version))
            .await?;
        println!("{name}   ran batch {batch} of {BATCHES} (token {token})");
    }
}
