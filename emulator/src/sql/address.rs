//! Where a Cloud SQL instance listens: an address of its own, allocated once
//! and kept with the instance, with PostgreSQL on 5432 (as on Cloud SQL) and
//! the connectors' TLS port 3307 beside it.
//!
//! The one place that chooses addresses. Today they are loopback addresses in
//! `127.64.0.0/10` (Linux routes all of `127.0.0.0/8` to the loopback device,
//! no configuration needed), picked at random so that several emulators on one
//! machine (tests run many) do not collide, and checked free on both ports.
//! When instances must be reachable from pods, this is where an address inside
//! the testbed's network namespace would be chosen instead.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// PostgreSQL's port on every instance address, as on Cloud SQL.
pub const POSTGRES_PORT: u16 = 5432;

/// The Cloud SQL connectors' TLS port (the Auth Proxy dials `<ip>:3307`).
pub const CONNECTOR_PORT: u16 = 3307;

/// A fresh instance address whose PostgreSQL and connector ports are free.
pub fn allocate() -> Result<Ipv4Addr, String> {
    for _ in 0..64 {
        let r: u32 = rand::random();
        let ip = Ipv4Addr::new(127, 64 + ((r >> 24) as u8 % 64), (r >> 16) as u8, 1 + ((r >> 8) as u8 % 254));
        let free = |port| TcpListener::bind(SocketAddr::from((ip, port))).is_ok();
        if free(POSTGRES_PORT) && free(CONNECTOR_PORT) {
            return Ok(ip);
        }
    }
    Err("no free loopback address for a Cloud SQL instance (tried 64)".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_are_loopback_and_distinct() {
        let a = super::allocate().unwrap();
        let b = super::allocate().unwrap();
        assert!(a.is_loopback() && b.is_loopback());
        assert_eq!(a.octets()[0], 127);
        assert!(a.octets()[1] >= 64 && a.octets()[1] < 128);
        assert_ne!(a, b, "random addresses (a collision here is a 1-in-4-million event)");
    }
}
