//! Helpers shared by the emulator's integration tests: a minimal HTTP/1.1 client (no extra
//! dependency) and polling of operations.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP exchange with the emulator at `base` (`http://127.0.0.1:PORT/`): returns the status and
/// the JSON body (`Null` when empty).
pub async fn call(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    call_with(base, method, path, body, &[]).await
}

/// Like [`call`], with extra headers.
pub async fn call_with(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect to emulator");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        payload.len()
    );
    if body.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    stream.write_all(req.as_bytes()).await.expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response head");
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    let json =
        if body.trim().is_empty() { Value::Null } else { serde_json::from_str(&body).unwrap_or(Value::String(body)) };
    (status, json)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls a Cloud SQL operation until DONE (at most `secs` seconds) and returns it.
pub async fn wait_sql_op(base: &str, prefix: &str, project: &str, op: &Value, secs: u64) -> Value {
    let name = op["name"].as_str().expect("operation name");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, v) = call(base, "GET", &format!("/{prefix}/projects/{project}/operations/{name}"), None).await;
        assert_eq!(code, 200, "operations.get: {v}");
        if v["status"] == "DONE" {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "operation {name} not done after {secs}s: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One raw HTTP exchange (binary body both ways): status, response head (lower-cased header
/// lines), body.
pub async fn exchange(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect to emulator");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("HTTP response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&String::from_utf8_lossy(&body)).into_bytes();
    }
    (status, head, body)
}

/// Asserts that Google's published contract refused no request (no defect of the client) and
/// found no answer of the emulator outside the response schemas.
pub fn assert_contract_kept(emu: &gcp_emulator::Emulator) {
    let r = emu.contract();
    assert!(
        r.defects.is_empty() && r.response_defects.is_empty(),
        "outside Google's contract: {}",
        serde_json::to_string_pretty(&r).unwrap_or_default()
    );
}
