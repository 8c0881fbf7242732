//! Parsers of single configuration values that any source (a file, a command line) can share.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Parses `3000`, `3000ms` or `3s` as a duration.
pub fn parse_millis(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (number, scale) = if let Some(n) = value.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000)
    } else {
        (value, 1)
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .map(Duration::from_millis)
        .ok_or_else(|| "expected milliseconds, like 3000, 3000ms or 3s".to_owned())
}

/// Resolves `host:port` to one socket address.
pub fn resolve_addr(value: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    value
        .to_socket_addrs()
        .map_err(|e| format!("`{value}` is not a reachable host:port: {e}"))?
        .next()
        .ok_or_else(|| format!("`{value}` resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_may_name_its_host() {
        let addr = resolve_addr("localhost:7000").expect("localhost resolves");
        assert!(addr.ip().is_loopback() && addr.port() == 7000, "{addr}");
        assert_eq!(
            resolve_addr("10.1.2.3:99"),
            Ok("10.1.2.3:99".parse().unwrap())
        );
        let error = resolve_addr("localhost").unwrap_err();
        assert!(
            error.contains("`localhost` is not a reachable host:port"),
            "{error}"
        );
    }

    #[test]
    fn millis_accepts_suffixes() {
        assert_eq!(parse_millis("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_millis("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_millis("-1").is_err());
        assert!(parse_millis("99999999999999999999s").is_err());
    }
}
