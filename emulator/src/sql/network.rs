//! Who may reach an instance's PostgreSQL, as on Cloud SQL (Cloud SQL, API floor;
//! `docs/emulator.md`, shared/reference/cloud-sql-network-and-contract.md):
//!
//! - **Authorized networks**, on the public port `<ip>:5432`: a relay ([`relay`]) accepts each
//!   connection, reads the instance's `settings.ipConfiguration` from the state (so a patch takes
//!   effect with its operation), and closes at once a client whose address is in none of its
//!   `authorizedNetworks` (unexpired), or any client when `ipv4Enabled` is false (Cloud SQL drops
//!   the packets; closing at once keeps tests fast). An authorized client is relayed byte for
//!   byte to the server on `<ip>:5433`, from `127.0.0.1`.
//! - **SSL**, enforced by PostgreSQL itself (`ssl=on` with a certificate from the emulator's CA):
//!   `pg_hba.conf` ([`hba`]) has one line for the connector bridge (from the instance's own
//!   address: a password, whatever the mode, as connector connections satisfy every mode) and the
//!   relay's lines for the effective `sslMode` ([`ssl_mode`]), rewritten and reloaded when it
//!   changes. The unix socket (the emulator's own administrative path, and IAM logins through the
//!   connector) is trusted, as before.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::Value;

use crate::app::{App, lock};

/// `ALLOW_UNENCRYPTED_AND_ENCRYPTED`: plaintext and TLS.
pub const ALLOW_UNENCRYPTED: &str = "ALLOW_UNENCRYPTED_AND_ENCRYPTED";
/// `ENCRYPTED_ONLY`: TLS, no client certificate.
pub const ENCRYPTED_ONLY: &str = "ENCRYPTED_ONLY";
/// `TRUSTED_CLIENT_CERTIFICATE_REQUIRED`: TLS with a client certificate from the instance's CA.
pub const CLIENT_CERT: &str = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED";

/// The source address of the relay's connections to the server (one `pg_hba.conf` line set).
pub const RELAY_SOURCE: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The effective SSL mode of an `ipConfiguration`: `sslMode` when set (it has priority, as on
/// Cloud SQL), else the legacy `requireSsl` (`true` is the client-certificate mode).
pub fn ssl_mode(ip_configuration: &Value) -> &'static str {
    match ip_configuration["sslMode"].as_str() {
        Some(ENCRYPTED_ONLY) => ENCRYPTED_ONLY,
        Some(CLIENT_CERT) => CLIENT_CERT,
        Some(ALLOW_UNENCRYPTED) => ALLOW_UNENCRYPTED,
        _ if ip_configuration["requireSsl"] == Value::Bool(true) => CLIENT_CERT,
        _ => ALLOW_UNENCRYPTED,
    }
}

/// Cloud SQL's refusal of an `ipConfiguration` whose `sslMode` and `requireSsl` (both given)
/// disagree: only `requireSsl = true` with `TRUSTED_CLIENT_CERTIFICATE_REQUIRED`, and `false` with
/// the two other modes, are valid pairs (message as the real API words it for PostgreSQL).
pub fn ssl_conflict(ip_configuration: &Value) -> Option<String> {
    let mode = ip_configuration["sslMode"].as_str().filter(|m| *m != "SSL_MODE_UNSPECIFIED")?;
    let require = ip_configuration["requireSsl"].as_bool()?;
    if require == (mode == CLIENT_CERT) {
        return None;
    }
    let need = if mode == CLIENT_CERT { "true" } else { "false" };
    Some(format!(
        "Invalid request: For a Postgres instance, sslMode value {mode} and requireSsl value {require} are \
         conflicting. When sslMode={mode}, requireSsl must be {need}. When requireSsl=true, sslMode must be \
         {CLIENT_CERT}. It's recommended that you only set sslMode."
    ))
}

/// Keeps `requireSsl` and `sslMode` of a patched `ipConfiguration` in step when the request set
/// only one of them (`given` is the request's `ipConfiguration`, `merged` the result).
pub fn align_ssl(given: &Value, merged: &mut Value) {
    let mode_given = given["sslMode"].as_str().is_some_and(|m| m != "SSL_MODE_UNSPECIFIED");
    let require_given = given["requireSsl"].is_boolean();
    if mode_given && !require_given {
        merged["requireSsl"] = Value::Bool(merged["sslMode"] == CLIENT_CERT);
    } else if require_given && !mode_given {
        if given["requireSsl"] == Value::Bool(true) {
            merged["sslMode"] = CLIENT_CERT.into();
        } else if merged["sslMode"] == CLIENT_CERT {
            merged["sslMode"] = ALLOW_UNENCRYPTED.into();
        }
    }
}

/// An IPv4 network in CIDR notation (`a.b.c.d/n`, or one address).
pub fn parse_cidr(value: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = match value.split_once('/') {
        Some((a, p)) => (a, p.parse::<u8>().ok().filter(|p| *p <= 32)?),
        None => (value, 32),
    };
    Some((addr.trim().parse().ok()?, prefix))
}

/// The first `authorizedNetworks` value that is not a network, if any (refused with 400).
pub fn bad_network(ip_configuration: &Value) -> Option<String> {
    ip_configuration["authorizedNetworks"].as_array()?.iter().find_map(|n| {
        let v = n["value"].as_str().unwrap_or_default();
        parse_cidr(v).is_none().then(|| v.to_string())
    })
}

fn in_network(ip: Ipv4Addr, (net, prefix): (Ipv4Addr, u8)) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// Whether a direct client from `peer` may reach the instance with this `ipConfiguration`: public
/// IP on, and `peer` in an authorized network whose `expirationTime` (if any) has not passed.
pub fn authorized(ip_configuration: &Value, peer: IpAddr) -> bool {
    let peer = match peer {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return false,
        },
    };
    if ip_configuration["ipv4Enabled"] == Value::Bool(false) {
        return false;
    }
    let now = std::time::SystemTime::now();
    ip_configuration["authorizedNetworks"].as_array().is_some_and(|nets| {
        nets.iter().any(|n| {
            let unexpired = match n["expirationTime"].as_str().filter(|t| !t.is_empty()) {
                None => true,
                Some(t) => humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).is_ok_and(|at| at > now),
            };
            unexpired && n["value"].as_str().and_then(parse_cidr).is_some_and(|net| in_network(peer, net))
        })
    })
}

/// The `pg_hba.conf` of an instance at `ip` with SSL mode `mode`: first match wins.
pub fn hba(ip: Ipv4Addr, mode: &str) -> String {
    let relay = match mode {
        ENCRYPTED_ONLY => "hostssl all all 127.0.0.1/32 scram-sha-256".to_string(),
        CLIENT_CERT => "hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca".to_string(),
        _ => "host all all 127.0.0.1/32 scram-sha-256".to_string(),
    };
    format!(
        "# Written by gcp-emulator (emulator/src/sql/network.rs); rewritten when sslMode changes.\n\
         # The emulator's administrative path and IAM logins through the connector: the unix socket.\n\
         local all all trust\n\
         # The connector bridge (<ip>:3307, TLS and IAM-authorized), from the instance's address.\n\
         host all all {ip}/32 scram-sha-256\n\
         # Direct clients through the relay (<ip>:5432, authorized networks checked), sslMode {mode}.\n\
         {relay}\n"
    )
}

/// Starts the relay of instance `key` on `ip:5432` to its server on `ip:server_port`, tracked
/// with the instance's connector listener.
pub fn relay(app: &std::sync::Arc<App>, key: &str, ip: Ipv4Addr, server_port: u16) -> Result<(), String> {
    let public = SocketAddr::from((ip, super::address::POSTGRES_PORT));
    let std_listener = std::net::TcpListener::bind(public).map_err(|e| format!("cannot listen on {public}: {e}"))?;
    std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;
    let backend = SocketAddr::from((ip, server_port));
    let (weak, instance) = (std::sync::Arc::downgrade(app), key.to_string());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut client, peer)) = listener.accept().await else { continue };
            let Some(app) = weak.upgrade() else { return };
            let allowed = lock(&app.state).sql.instances.get(&instance).is_some_and(|i| {
                i.resource["state"] == "RUNNABLE" && authorized(&i.resource["settings"]["ipConfiguration"], peer.ip())
            });
            drop(app);
            if !allowed {
                // Closed at once, before PostgreSQL sees a byte (Cloud SQL drops the packets).
                drop(client);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut db) = relay_connect(backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut db).await;
            });
        }
    });
    super::connectors(app).track(key, task);
    Ok(())
}

/// A connection to the server from [`RELAY_SOURCE`] (the source the relay's `pg_hba.conf` lines name).
async fn relay_connect(backend: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((RELAY_SOURCE, 0)))?;
    socket.connect(backend).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn networks_and_expiry() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cfg = json!({"ipv4Enabled": true, "authorizedNetworks": [
            {"value": "10.1.0.0/16"},
            {"value": "127.0.0.1"},
            {"value": "192.0.2.0/24", "expirationTime": "2001-01-01T00:00:00Z"},
            {"value": "198.51.100.0/24", "expirationTime": "2999-01-01T00:00:00.5Z"},
        ]});
        assert!(authorized(&cfg, ip("10.1.200.3")));
        assert!(!authorized(&cfg, ip("10.2.0.1")));
        assert!(authorized(&cfg, ip("127.0.0.1")));
        assert!(!authorized(&cfg, ip("127.0.0.2")));
        assert!(!authorized(&cfg, ip("192.0.2.7")), "expired");
        assert!(authorized(&cfg, ip("198.51.100.7")), "not yet expired");
        assert!(authorized(&json!({"authorizedNetworks": [{"value": "0.0.0.0/0"}]}), ip("203.0.113.9")));
        assert!(!authorized(&json!({}), ip("127.0.0.1")), "no network, no client");
        let off = json!({"ipv4Enabled": false, "authorizedNetworks": [{"value": "0.0.0.0/0"}]});
        assert!(!authorized(&off, ip("127.0.0.1")), "no public IP");
        assert_eq!(bad_network(&json!({"authorizedNetworks": [{"value": "1.2.3.4/33"}]})), Some("1.2.3.4/33".into()));
        assert_eq!(bad_network(&cfg), None);
    }

    #[test]
    fn ssl_modes() {
        assert_eq!(ssl_mode(&json!({})), ALLOW_UNENCRYPTED);
        assert_eq!(ssl_mode(&json!({"requireSsl": true})), CLIENT_CERT);
        assert_eq!(ssl_mode(&json!({"requireSsl": true, "sslMode": "ENCRYPTED_ONLY"})), ENCRYPTED_ONLY);
        assert!(ssl_conflict(&json!({"requireSsl": true, "sslMode": "ENCRYPTED_ONLY"})).is_some());
        assert!(ssl_conflict(&json!({"requireSsl": false, "sslMode": CLIENT_CERT})).is_some());
        assert!(ssl_conflict(&json!({"requireSsl": true, "sslMode": CLIENT_CERT})).is_none());
        assert!(ssl_conflict(&json!({"sslMode": ENCRYPTED_ONLY})).is_none());
        let mut m = json!({"requireSsl": false, "sslMode": CLIENT_CERT});
        align_ssl(&json!({"sslMode": CLIENT_CERT}), &mut m);
        assert_eq!(m["requireSsl"], true);
        let mut m = json!({"requireSsl": false, "sslMode": CLIENT_CERT});
        align_ssl(&json!({"requireSsl": false}), &mut m);
        assert_eq!(m["sslMode"], ALLOW_UNENCRYPTED);
        let ip = Ipv4Addr::new(127, 64, 1, 2);
        assert!(hba(ip, ENCRYPTED_ONLY).contains("\nhostssl all all 127.0.0.1/32 scram-sha-256\n"));
        assert!(!hba(ip, ENCRYPTED_ONLY).contains("\nhost all all 127.0.0.1"));
        assert!(hba(ip, CLIENT_CERT).contains("clientcert=verify-ca"));
        assert!(hba(ip, ALLOW_UNENCRYPTED).contains("\nhost all all 127.64.1.2/32 scram-sha-256\n"));
    }
}
