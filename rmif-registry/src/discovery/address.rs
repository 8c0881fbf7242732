//! Which address a process announces: the one it is bound to, or, when bound to a wildcard
//! address, a local interface's, chosen by `Ip_include_pattern` and `Ip_exclude_pattern`.

use std::net::{IpAddr, SocketAddr};

use crate::error::RegistryError;

/// Picks the address to announce for a server bound to `bound`: the bound address itself unless
/// it is unspecified (0.0.0.0), else the first local address that `include` matches and
/// `exclude` does not (loopback last), as `Ip_include_pattern` and `Ip_exclude_pattern`
/// configure.
pub fn advertised_addr(
    bound: SocketAddr,
    include: Option<&regex_lite::Regex>,
    exclude: Option<&regex_lite::Regex>,
) -> Result<SocketAddr, RegistryError> {
    if !bound.ip().is_unspecified() {
        return Ok(bound);
    }
    let interfaces: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map_err(|e| RegistryError::NoLocalAddress {
            reason: format!("cannot list the local interfaces: {e}"),
        })?
        .into_iter()
        .map(|interface| interface.ip())
        .collect();
    pick(bound, &interfaces, include, exclude)
}

/// [`advertised_addr`] over a given list of interface addresses.
fn pick(
    bound: SocketAddr,
    interfaces: &[IpAddr],
    include: Option<&regex_lite::Regex>,
    exclude: Option<&regex_lite::Regex>,
) -> Result<SocketAddr, RegistryError> {
    let mut candidates: Vec<IpAddr> = interfaces
        .iter()
        .copied()
        .filter(|ip| ip.is_ipv4() == bound.is_ipv4())
        .filter(|ip| {
            let text = ip.to_string();
            include.is_none_or(|re| re.is_match(&text))
                && !exclude.is_some_and(|re| re.is_match(&text))
        })
        .collect();
    // Stable: among equals, the interfaces' order decides.
    candidates.sort_by_key(|ip| ip.is_loopback());
    candidates
        .first()
        .map(|ip| SocketAddr::new(*ip, bound.port()))
        .ok_or_else(|| RegistryError::NoLocalAddress {
            reason: format!(
                "none of the local addresses ({}) matches Ip_include_pattern / \
                 Ip_exclude_pattern",
                interfaces
                    .iter()
                    .map(IpAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interfaces() -> Vec<IpAddr> {
        ["127.0.0.1", "10.1.2.3", "192.168.7.9", "::1", "fe80::1"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect()
    }

    fn wildcard() -> SocketAddr {
        "0.0.0.0:9000".parse().unwrap()
    }

    fn re(pattern: &str) -> regex_lite::Regex {
        regex_lite::Regex::new(pattern).unwrap()
    }

    #[test]
    fn a_bound_address_is_announced_as_it_is() {
        let bound: SocketAddr = "10.9.9.9:1234".parse().unwrap();
        let exclude_everything = re(".");
        assert_eq!(
            advertised_addr(bound, None, Some(&exclude_everything)).unwrap(),
            bound,
            "the patterns only choose among interfaces for a wildcard address"
        );
    }

    #[test]
    fn a_wildcard_picks_the_first_matching_interface_and_loopback_last() {
        let picked = |include: Option<&str>, exclude: Option<&str>| {
            let (include, exclude) = (include.map(re), exclude.map(re));
            pick(
                wildcard(),
                &interfaces(),
                include.as_ref(),
                exclude.as_ref(),
            )
        };
        assert_eq!(picked(None, None).unwrap().to_string(), "10.1.2.3:9000");
        assert_eq!(
            picked(Some(r"^192\.168\."), None).unwrap().to_string(),
            "192.168.7.9:9000"
        );
        assert_eq!(
            picked(None, Some(r"^10\.")).unwrap().to_string(),
            "192.168.7.9:9000"
        );
        assert_eq!(
            picked(None, Some(r"^(10|192)\.")).unwrap().to_string(),
            "127.0.0.1:9000",
            "loopback when nothing else is left"
        );
        let none = picked(Some(r"^172\."), None).unwrap_err().to_string();
        assert!(
            none.contains("10.1.2.3") && none.contains("Ip_include_pattern"),
            "{none}"
        );
        let v6 = pick("[::]:9000".parse().unwrap(), &interfaces(), None, None).unwrap();
        assert_eq!(v6.to_string(), "[fe80::1]:9000");
    }
}
