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
