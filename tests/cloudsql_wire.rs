//! A packet-level fact (testbed lane: needs `tcpdump`, which `scripts/testbed packages` installs,
//! and root to capture): during a `skyform apply` of the seed's way of reaching Cloud SQL (the
//! `postgres` provider through the connector, `instance = connection_name`, on an instance with no
//! authorized network and `ENCRYPTED_ONLY`), `tcpdump` on the loopback device sees the traffic on
//! port 3307 and not one byte of the `postgres` password, nor the user name or the statements.
//!
//! The control proves the capture sees what crosses in clear: a deliberately plaintext direct
//! session (`sslmode = "disable"`, from an authorized network, on an instance that allows it) puts
//! the user name and the statement's role name on the wire on 5432, readable in the capture, while
//! the password still never appears (PostgreSQL's SCRAM does not send it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gcp_emulator::{Config, Emulator, OpDurations};

const P: &str = "skyform-wire";
const ROOT_PASSWORD: &str = "Wire-Secret-7f3a9c-Root";

fn spec(emu: &Emulator, ip_configuration: &str, postgres: &str) -> String {
    format!(
        r#"
[variable.root_password]
type = "string"
sensitive = true

[provider.gcp]
project = "{P}"
region = "us-central1"
endpoint = "{endpoint}"
anonymous = true

[resource.gcp_service_account.sa]
account_id = "skypilot-sql"

[resource.gcp_project_iam_member.instance_user]
role = "roles/cloudsql.instanceUser"
member = "${{gcp_service_account.sa.member}}"

[resource.gcp_sql_instance.db]
name = "wire-db"
database_version = "POSTGRES_15"
tier = "db-f1-micro"
database_flags = {{ "cloudsql.iam_authentication" = "on" }}
deletion_protection = false
root_password = "${{var.root_password}}"
ip_configuration = {ip_configuration}

[resource.gcp_sql_user.iam]
instance = "${{gcp_sql_instance.db.name}}"
name = "${{gcp_service_account.sa.email}}"
type = "CLOUD_IAM_SERVICE_ACCOUNT"
depends_on = ["gcp_project_iam_member.instance_user"]

[provider.postgres]
{postgres}

[resource.postgres_grant.iam_superuser]
role = "cloudsqlsuperuser"
member = "${{gcp_service_account.sa.sql_iam_user}}"
depends_on = ["gcp_sql_user.iam"]
"#,
        endpoint = emu.base_url()
    )
}

fn skyform(dir: &Path, emu: &Emulator, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skyform"))
        .args(args)
        .current_dir(dir)
        .env("SKYFORM_GCP_ENDPOINT", emu.base_url())
        .env("SKYFORM_GCP_ACCESS_TOKEN", "operator-token")
        .env("SKYFORM_VAR_root_password", ROOT_PASSWORD)
        .stdin(Stdio::null())
        .output()
        .expect("skyform runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A running `tcpdump -i lo` writing to a file.
struct Capture {
    child: tokio::process::Child,
    file: PathBuf,
}

impl Capture {
    async fn start(file: PathBuf, filter: &str) -> Capture {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new("tcpdump")
            // --immediate-mode: packets handed over at once (not in the ring's blocks, which a stop
            // could lose); -U: each packet written at once; -Z root: no privilege drop before
            // writing the file.
            .args(["-i", "lo", "--immediate-mode", "-U", "-n", "-s", "0", "-Z", "root", "-w"])
            .arg(&file)
            .arg(filter)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tcpdump runs (apt-get install tcpdump, or scripts/testbed packages; needs root)");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(l)) = lines.next_line().await {
                if l.contains("listening on") {
                    return true;
                }
                eprintln!("tcpdump: {l}");
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "tcpdump did not start listening (root is needed)");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Capture { child, file }
    }

    /// Stops the capture (SIGINT: tcpdump flushes and exits) and returns the file's bytes.
    async fn stop(mut self) -> Vec<u8> {
        // Packets still in the kernel's buffer reach tcpdump first.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let pid = self.child.id().expect("tcpdump still runs").to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        assert!(matches!(status, Ok(Ok(_))), "tcpdump stops on SIGINT");
        std::fs::read(&self.file).expect("the capture file")
    }
}

/// The TCP packets of a pcap capture: (source port, destination port, TCP payload).
fn tcp_packets(pcap: &[u8]) -> Vec<(u16, u16, Vec<u8>)> {
    assert!(pcap.len() >= 24, "a pcap file");
    let le = match pcap[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("not a pcap file"),
    };
    let u32_at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le { u32::from_le_bytes(w) } else { u32::from_be_bytes(w) }
    };
    // Link-layer header length: Ethernet (lo's usual), Linux cooked v1/v2, BSD loopback.
    let link = match u32_at(pcap, 20) {
        1 => 14,
        113 => 16,
        276 => 20,
        0 => 4,
        other => panic!("unexpected link type {other}"),
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let caplen = u32_at(pcap, at + 8) as usize;
        let start = at + 16;
        let Some(frame) = pcap.get(start..start + caplen) else { break };
        at = start + caplen;
        let Some(ip) = frame.get(link..) else { continue };
        if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        let Some(tcp) = ip.get(ihl..total) else { continue };
        if tcp.len() < 20 {
            continue;
        }
        let (sport, dport) = (u16::from_be_bytes([tcp[0], tcp[1]]), u16::from_be_bytes([tcp[2], tcp[3]]));
        let off = usize::from(tcp[12] >> 4) * 4;
        out.push((sport, dport, tcp.get(off..).unwrap_or_default().to_vec()));
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// One port's TCP payloads, in capture order and concatenated (both directions).
fn payload_on(packets: &[(u16, u16, Vec<u8>)], port: u16) -> Vec<u8> {
    packets.iter().filter(|(s, d, _)| *s == port || *d == port).flat_map(|(_, _, p)| p.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_byte_crosses_the_wire_through_the_connector() {
    let emu =
        Emulator::start(Config { op_durations: OpDurations::uniform(Duration::from_millis(30)), ..Default::default() })
            .await
            .expect("emulator starts");
    let dir = tempfile::Builder::new().prefix("skyform-wire").tempdir_in("/tmp").unwrap();
    let main = dir.path().join("main.toml");
    let seed_ip = r#"{ ipv4_enabled = true, ssl_mode = "ENCRYPTED_ONLY", authorized_networks = [] }"#;
    let connector = r#"instance = "${gcp_sql_instance.db.connection_name}"
user = "postgres"
password = "${var.root_password}""#;
    std::fs::write(&main, spec(&emu, seed_ip, connector)).unwrap();

    // The apply through the connector, captured.
    let cap = Capture::start(dir.path().join("connector.pcap"), "tcp port 3307 or tcp port 5432").await;
    let o = skyform(dir.path(), &emu, &["apply", "-f", "main.toml", "--auto-approve"]);
    let bytes = cap.stop().await;
    assert!(o.status.success(), "{}", text(&o));
    let packets = tcp_packets(&bytes);
    let on_3307 = packets.iter().filter(|(s, d, _)| *s == 3307 || *d == 3307).count();
    let on_5432 = packets.iter().filter(|(s, d, _)| *s == 5432 || *d == 5432).count();
    let tls = payload_on(&packets, 3307);
    eprintln!(
        "connector capture: {} bytes, {} TCP packets, {on_3307} on 3307 ({} payload bytes), {on_5432} on 5432",
        bytes.len(),
        packets.len(),
        tls.len()
    );
    assert!(on_3307 >= 10 && tls.len() > 1000, "the session is on 3307: {on_3307} packets, {} bytes", tls.len());
    assert_eq!(on_5432, 0, "nothing tried the direct port");
    assert_eq!(tls.first(), Some(&0x16), "a TLS handshake record first");
    assert!(!contains(&bytes, ROOT_PASSWORD.as_bytes()), "the password crossed the wire in clear");
    assert!(!contains(&bytes, b"user\0postgres\0"), "the startup message crossed in clear");
    assert!(!contains(&bytes, b"cloudsqlsuperuser"), "a statement crossed in clear");

    // The control: the same instance opened to this address, plaintext allowed, and a direct
    // session with sslmode = "disable" (a plan reads the grant back).
    let open_ip = r#"{ ipv4_enabled = true, ssl_mode = "ALLOW_UNENCRYPTED_AND_ENCRYPTED", authorized_networks = [{ name = "wire-test", value = "127.0.0.1/32" }] }"#;
    let plain = r#"host = "${gcp_sql_instance.db.public_ip}"
sslmode = "disable"
user = "postgres"
password = "${var.root_password}""#;
    std::fs::write(&main, spec(&emu, open_ip, plain)).unwrap();
    let o =
        skyform(dir.path(), &emu, &["apply", "-f", "main.toml", "--auto-approve", "--target", "gcp_sql_instance.db"]);
    assert!(o.status.success(), "{}", text(&o));
    let cap = Capture::start(dir.path().join("plaintext.pcap"), "tcp port 3307 or tcp port 5432").await;
    let o = skyform(dir.path(), &emu, &["plan", "-f", "main.toml", "--detailed-exitcode"]);
    let bytes = cap.stop().await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let packets = tcp_packets(&bytes);
    let clear = payload_on(&packets, 5432);
    eprintln!(
        "plaintext control capture: {} bytes, {} TCP packets, {} payload bytes on 5432",
        bytes.len(),
        packets.len(),
        clear.len()
    );
    assert!(contains(&clear, b"user\0postgres\0"), "the capture reads the plaintext startup message");
    assert!(contains(&clear, b"cloudsqlsuperuser"), "the capture reads the plaintext statement's parameters");
    assert!(!contains(&bytes, ROOT_PASSWORD.as_bytes()), "SCRAM never sends the password, even in clear");
    emu.shutdown().await;
}
