//! The README's configuration example, loaded the way the README tells users to load it, so that
//! it stays a valid properties file that sets what it says it sets.

use std::time::Duration;

use rmif_core::balance::BalancePolicy;
use rmif_core::{Compression, Role, RpcConfig, Serialization};

/// The text of the README's one ```properties block. include_str! makes a README edit rebuild
/// this test.
fn readme_properties() -> &'static str {
    let readme = include_str!("../README.md");
    let mut blocks = readme.split("```properties\n").skip(1);
    let block = blocks.next().expect("README.md has a ```properties block");
    assert!(
        blocks.next().is_none(),
        "README.md has more than one ```properties block; load each of them here"
    );
    let (text, _) = block
        .split_once("```")
        .expect("the ```properties block is closed");
    text
}

#[test]
fn the_readme_properties_block_loads_with_the_values_it_shows() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("rmif.properties");
    std::fs::write(&path, readme_properties()).expect("write the block to a file");

    let config = RpcConfig::load(&path)
        .unwrap_or_else(|e| panic!("README.md's ```properties block does not load: {e}"));

    assert_eq!(
        config.registry,
        ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"]
    );
    assert_eq!(config.role, Role::Provider);
    assert_eq!(config.provider.port, 9999);
    assert_eq!(config.consumer.timeout, Duration::from_millis(9000));
    assert_eq!(config.provider.tick, Duration::from_millis(3000));
    assert_eq!(config.consumer.tick, Duration::from_millis(3000));
    assert_eq!(config.provider.again, 3);
    assert_eq!(config.consumer.again, 3);
    assert_eq!(config.consumer.policy, BalancePolicy::Random);
    assert_eq!(config.consumer.serialization, Serialization::MsgPack);
    assert_eq!(config.provider.compression.algorithm, Compression::Lz4);
    assert_eq!(config.consumer.compression.algorithm, Compression::Lz4);
}

/// The README's first ```rust block: the quickstart, as the README shows it.
fn readme_quickstart() -> &'static str {
    let readme = include_str!("../README.md");
    let (_, after) = readme
        .split_once("```rust\n")
        .expect("README.md has a ```rust block");
    let (block, _) = after
        .split_once("```")
        .expect("the ```rust block is closed");
    block
}

#[test]
fn the_readme_quickstart_is_the_quickstart_example() {
    // The example is compiled (and run, below) by the tests; the README shows it verbatim.
    assert_eq!(
        readme_quickstart(),
        include_str!("../examples/quickstart.rs"),
        "README.md's quickstart and examples/quickstart.rs differ: copy one onto the other"
    );
}

#[tokio::test]
async fn the_quickstart_runs_against_a_registry() {
    let data = tempfile::tempdir().unwrap();
    let member = rmif_registry_server::RegistryServer::start(
        rmif_registry_server::RegistryConfig::single("127.0.0.1:0".parse().unwrap(), data.path()),
    )
    .await
    .unwrap();
    // The example's own file, with the test's registry instead of the --dev one.
    let properties = include_str!("../examples/quickstart.properties").replace(
        "Config_center_url=127.0.0.1:7000",
        &format!("Config_center_url={}", member.client_addr()),
    );
    let config = data.path().join("quickstart.properties");
    std::fs::write(&config, properties).unwrap();

    let program = rmif_testkit::program("examples/quickstart");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program).arg(&config).output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout, "7 / 2 = 3\n1 / 0 = Err(DivisionByZero)\n");
    member.shutdown().await;
}
