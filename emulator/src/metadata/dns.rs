//! The one name Google's network resolves that clients rely on to find the metadata server (API
//! floor, beside the metadata server):
//! `metadata.google.internal` → `169.254.169.254`, as GKE's cluster DNS answers it (it forwards
//! that zone to the node's metadata server). Google's auth libraries probe this name and the
//! address at once to learn whether they run on Google Cloud; a DNS failure that answers first
//! makes them conclude they do not.
//!
//! A UDP responder for the testbed's pods (`Config::dns_listen`): A queries for that name get the
//! address, other queries for it get an empty answer, every other name NXDOMAIN at once (there is
//! no internet to resolve it on).

use std::net::{Ipv4Addr, SocketAddr};

/// The metadata server's name.
pub const METADATA_NAME: &str = "metadata.google.internal";
/// The metadata server's address.
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_FORMERR: u16 = 1;

/// Serves on `socket` until the task is aborted.
pub async fn serve(socket: tokio::net::UdpSocket) {
    let mut buf = [0u8; 512];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else { continue };
        if let Some(reply) = answer(&buf[..n]) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// Binds the responder's socket.
pub async fn bind(at: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    tokio::net::UdpSocket::bind(at).await
}

/// The reply to one query message; `None` for what is not a query.
pub fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None; // too short, or a response
    }
    let flags_in = u16::from_be_bytes([query[2], query[3]]);
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    // Response, the query's opcode and RD, recursion available.
    let base_flags = 0x8000 | (flags_in & 0x7900) | 0x0080;
    let header = |rcode: u16, qd: u16, an: u16| {
        let mut h = Vec::with_capacity(12);
        h.extend_from_slice(&query[..2]);
        h.extend_from_slice(&(base_flags | rcode).to_be_bytes());
        h.extend_from_slice(&qd.to_be_bytes());
        h.extend_from_slice(&an.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0]);
        h
    };
    let parsed = (qdcount == 1).then(|| question(&query[12..])).flatten();
    let Some((name, qtype, qclass, qlen)) = parsed else {
        return Some(header(RCODE_FORMERR, 0, 0));
    };
    let q = &query[12..12 + qlen];
    if !name.eq_ignore_ascii_case(METADATA_NAME) {
        let mut r = header(RCODE_NXDOMAIN, 1, 0);
        r.extend_from_slice(q);
        return Some(r);
    }
    let a = qtype == TYPE_A && qclass == CLASS_IN;
    let mut r = header(0, 1, u16::from(a));
    r.extend_from_slice(q);
    if a {
        r.extend_from_slice(&[0xC0, 0x0C]); // the question's name
        r.extend_from_slice(&TYPE_A.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&60u32.to_be_bytes());
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&METADATA_IP.octets());
    }
    Some(r)
}

/// The question's name (dotted, no trailing dot), type, class and encoded length.
fn question(b: &[u8]) -> Option<(String, u16, u16, usize)> {
    let mut labels = Vec::new();
    let mut i = 0;
    loop {
        let len = usize::from(*b.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression or extended labels: not in a question we answer
        }
        labels.push(std::str::from_utf8(b.get(i..i + len)?).ok()?.to_string());
        i += len;
    }
    let qtype = u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*b.get(i + 2)?, *b.get(i + 3)?]);
    Some((labels.join("."), qtype, qclass, i + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn the_metadata_name_resolves_to_the_metadata_address() {
        let r = answer(&query("Metadata.Google.Internal", TYPE_A)).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34], "same id");
        assert_eq!(r[3] & 0x0F, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[169, 254, 169, 254]);
    }

    #[test]
    fn other_types_are_empty_and_other_names_do_not_exist() {
        let r = answer(&query(METADATA_NAME, 28)).unwrap();
        assert_eq!((r[3] & 0x0F, u16::from_be_bytes([r[6], r[7]])), (0, 0), "AAAA: NOERROR, no answer");
        let r = answer(&query("pypi.org", TYPE_A)).unwrap();
        assert_eq!(r[3] & 0x0F, 3, "NXDOMAIN");
        assert!(answer(&[0; 5]).is_none());
        let mut bad = query("x", TYPE_A);
        bad.truncate(14);
        assert_eq!(answer(&bad).unwrap()[3] & 0x0F, 1, "FORMERR");
    }
}
