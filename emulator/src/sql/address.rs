//! Where a Cloud SQL instance listens (Cloud SQL, API floor): an address of its own, allocated once
//! and kept with the instance, with its public PostgreSQL port 5432 (as on Cloud SQL: the
//! relay that checks authorized networks, [`super::network`]), the connectors' TLS port 3307
//! beside it, and the PostgreSQL server itself on the internal port 5433.
//!
//! The one place that chooses addresses. By default they are loopback addresses
//! in `127.64.0.0/10` (Linux routes all of `127.0.0.0/8` to the loopback device,
//! no configuration needed); the testbed, whose pods must reach them, gives a
//! network of its own (`Config::sql_network`, routed locally in its network
//! namespace). Addresses are picked at random so that several emulators on one
//! machine (tests run many) do not collide, and checked free on all three ports.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// PostgreSQL's public port on every instance address, as on Cloud SQL: the relay that lets in
/// only the instance's authorized networks.
pub const POSTGRES_PORT: u16 = 5432;

/// The PostgreSQL server's own port on the instance address, behind the relay and the connector
/// bridge (not part of Cloud SQL: clients use 5432 or 3307).
pub const SERVER_PORT: u16 = 5433;

/// The Cloud SQL connectors' TLS port (the Auth Proxy dials `<ip>:3307`).
pub const CONNECTOR_PORT: u16 = 3307;

/// The default network: `127.64.0.0/10`.
const LOOPBACK_NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 64, 0, 0), 10);

/// A fresh instance address in `network` (default `127.64.0.0/10`) whose PostgreSQL, connector
/// and server ports are free; never the network's first or last address.
pub fn allocate(network: Option<(Ipv4Addr, u8)>) -> Result<Ipv4Addr, String> {
    let (base, prefix) = network.unwrap_or(LOOPBACK_NETWORK);
    if !(8..=30).contains(&prefix) {
        return Err(format!("the Cloud SQL network {base}/{prefix} must have a prefix between /8 and /30"));
    }
    let host_bits = 32 - u32::from(prefix);
    let mask = u32::MAX << host_bits;
    let net = u32::from(base) & mask;
    for _ in 0..64 {
        let host = 1 + rand::random::<u32>() % ((1u32 << host_bits) - 2);
        let ip = Ipv4Addr::from(net | host);
        let free = |port| TcpListener::bind(SocketAddr::from((ip, port))).is_ok();
        if free(POSTGRES_PORT) && free(CONNECTOR_PORT) && free(SERVER_PORT) {
            return Ok(ip);
        }
    }
    Err(format!("no free address in {base}/{prefix} for a Cloud SQL instance (tried 64)"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_are_loopback_and_distinct() {
        let a = super::allocate(None).unwrap();
        let b = super::allocate(None).unwrap();
        assert!(a.is_loopback() && b.is_loopback());
        assert_eq!(a.octets()[0], 127);
        assert!(a.octets()[1] >= 64 && a.octets()[1] < 128);
        assert_ne!(a, b, "random addresses (a collision here is a 1-in-4-million event)");
    }

    #[test]
    fn a_given_network_is_used_and_checked() {
        // 127.99.0.0/16 is loopback here too, so the bind check works without configuration.
        let net = Some((std::net::Ipv4Addr::new(127, 99, 7, 7), 16));
        for _ in 0..20 {
            let a = super::allocate(net).unwrap();
            assert_eq!(&a.octets()[..2], &[127, 99]);
            assert!(a.octets()[2..] != [0, 0] && a.octets()[2..] != [255, 255], "{a}");
        }
        let err = super::allocate(Some((std::net::Ipv4Addr::new(10, 0, 0, 0), 31))).unwrap_err();
        assert!(err.contains("/31"), "{err}");
    }
}
