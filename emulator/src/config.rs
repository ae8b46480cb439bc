//! Configuration of an emulator instance (shared floor): what the library caller or the binary's
//! flags choose.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A self-signed CA certificate used as the GKE `masterAuth.clusterCaCertificate` when none is
/// configured. It signs nothing; it only lets `gcloud container clusters get-credentials` write a
/// syntactically valid kubeconfig.
pub const PLACEHOLDER_CA_PEM: &str = include_str!("../assets/placeholder-ca.pem");

/// The endpoint reported for GKE clusters when none is configured (a TEST-NET-1 address that
/// nothing listens on).
pub const PLACEHOLDER_GKE_ENDPOINT: &str = "192.0.2.1";

/// How the emulator is set up. `Config::default()` is what unit tests want: a random loopback
/// port, state in memory, operations that finish at once, no eventual consistency, no faults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory that keeps the state (a JSON file) and the PostgreSQL data directories across
    /// restarts. `None` keeps everything in memory and in a temporary directory removed on stop.
    pub state_dir: Option<PathBuf>,
    /// How long long-running operations take, per operation type.
    pub op_durations: OpDurations,
    /// A Cloud SQL instance name stays reserved this long after the instance is deleted.
    pub name_reuse_window: Duration,
    /// A newly created service account is invisible to reads and to policy member validation for
    /// this long (eventual consistency). Zero turns it off.
    pub sa_visibility_delay: Duration,
    /// GKE cluster endpoint: `host[:port]` or a URL such as `https://127.0.0.1:6443` (the scheme is
    /// dropped, as the API reports a bare address and clients prepend `https://`).
    pub gke_endpoint: String,
    /// PEM of the CA that signs the GKE endpoint's certificate.
    pub gke_ca_pem: String,
    /// When set, every API request must carry `Authorization: Bearer <token>` (or a token the
    /// emulator minted).
    pub access_token: Option<String>,
    /// Enforce IAM on what principals (tokens the emulator minted) may do: every API method needs
    /// its IAM permission, granted by a role in the project's policy (module `access`). The
    /// configured admin token stays an owner.
    pub enforce_iam: bool,
    /// Serve the APIs over HTTPS, with a certificate for 127.0.0.1 and localhost signed by the
    /// emulator's own CA (`Emulator::ca_pem`), instead of plain HTTP.
    pub tls: bool,
    /// Seed of the random generator that decides injected faults, so runs are reproducible.
    pub fault_seed: u64,
    /// Where Cloud SQL instance addresses come from (network address, prefix length). `None`:
    /// loopback addresses in `127.64.0.0/10`. The testbed gives a network routed to its network
    /// namespace's loopback (`ip route add local`), so pods reach the instances.
    pub sql_network: Option<(Ipv4Addr, u8)>,
    /// Also serve the metadata server of pods on this address (the testbed: `169.254.169.254:80`),
    /// where a caller is known by its source address: the pod with that IP on the cluster's
    /// apiserver, as GKE's metadata server knows pods.
    pub metadata_listen: Option<SocketAddr>,
    /// Also answer DNS (UDP) here for pods: `metadata.google.internal`, and NXDOMAIN for the rest.
    pub dns_listen: Option<SocketAddr>,
    /// Size of generated service-account keys. Debug builds default to 1024 bits because the
    /// unoptimised `rsa` crate needs 3-10 s for a 2048-bit key on this class of machine; release
    /// builds default to 2048 (what the real API creates).
    pub rsa_key_bits: usize,
    /// Where Google's discovery documents are (`scripts/discovery-docs` prints it). `None`: the
    /// `SKYFORM_DISCOVERY_DIR` environment variable, else the script's default cache directory
    /// (`crate::contract::resolve_dir`). The emulator does not start without them.
    pub discovery_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            op_durations: OpDurations::default(),
            name_reuse_window: Duration::from_secs(7 * 24 * 3600),
            sa_visibility_delay: Duration::ZERO,
            gke_endpoint: PLACEHOLDER_GKE_ENDPOINT.to_string(),
            gke_ca_pem: PLACEHOLDER_CA_PEM.to_string(),
            access_token: None,
            enforce_iam: false,
            tls: false,
            fault_seed: 0,
            sql_network: None,
            metadata_listen: None,
            dns_listen: None,
            rsa_key_bits: if cfg!(debug_assertions) { 1024 } else { 2048 },
            discovery_dir: None,
        }
    }
}

/// Duration of long-running operations. A specific entry is looked up as `"<api>.<TYPE>"`, e.g.
/// `"sql.CREATE"`, `"container.CREATE_CLUSTER"`, `"serviceusage.ENABLE"`, then as `"<api>"`, then
/// `default` applies.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OpDurations {
    /// Duration of any operation without a specific entry.
    #[serde(with = "millis", default)]
    pub default: Duration,
    /// Durations by `"<api>.<TYPE>"` or `"<api>"` key.
    #[serde(with = "millis_map", default)]
    pub per_type: BTreeMap<String, Duration>,
}

impl OpDurations {
    /// Every operation takes `d`.
    pub fn uniform(d: Duration) -> Self {
        OpDurations { default: d, per_type: BTreeMap::new() }
    }

    /// The duration of an operation of `op_type` in `api` (`sql`, `container`, `serviceusage`).
    pub fn lookup(&self, api: &str, op_type: &str) -> Duration {
        self.per_type
            .get(&format!("{api}.{op_type}"))
            .or_else(|| self.per_type.get(api))
            .copied()
            .unwrap_or(self.default)
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod millis_map {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, Duration>, s: S) -> Result<S::Ok, S::Error> {
        let ms: BTreeMap<&String, u64> = m.iter().map(|(k, v)| (k, v.as_millis() as u64)).collect();
        ms.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Duration>, D::Error> {
        let ms = BTreeMap::<String, u64>::deserialize(d)?;
        Ok(ms.into_iter().map(|(k, v)| (k, Duration::from_millis(v))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_prefers_specific_then_api_then_default() {
        let mut d = OpDurations::uniform(Duration::from_millis(5));
        d.per_type.insert("sql".into(), Duration::from_millis(7));
        d.per_type.insert("sql.CREATE".into(), Duration::from_millis(9));
        assert_eq!(d.lookup("sql", "CREATE"), Duration::from_millis(9));
        assert_eq!(d.lookup("sql", "UPDATE"), Duration::from_millis(7));
        assert_eq!(d.lookup("container", "CREATE_CLUSTER"), Duration::from_millis(5));
    }

    #[test]
    fn durations_round_trip_as_millis() {
        let json = r#"{"default":10,"per_type":{"sql.CREATE":250}}"#;
        let d: OpDurations = serde_json::from_str(json).unwrap();
        assert_eq!(d.lookup("sql", "CREATE"), Duration::from_millis(250));
        assert_eq!(serde_json::to_string(&d).unwrap(), json);
    }
}
