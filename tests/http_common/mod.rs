//! A tiny HTTP server for tests that need something to request (checks) or to post to (drift
//! --notify).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A tiny HTTP server: answers with the queued responses in order (the last one repeats) and
/// records every request's line and headers.
pub struct Server {
    host: String,
    port: u16,
    replies: Arc<Mutex<Vec<(u16, String)>>>,
    requests: Arc<Mutex<Vec<String>>>,
    /// Whether the replies go round (else the last one repeats).
    cycle: Arc<std::sync::atomic::AtomicBool>,
}

impl Server {
    pub fn start(replies: &[(u16, &str)]) -> Server {
        Server::start_on("127.0.0.1", replies)
    }

    /// On `host` (an address of this machine, e.g. the testbed's node address that pods reach).
    pub fn start_on(host: &str, replies: &[(u16, &str)]) -> Server {
        let listener = TcpListener::bind((host, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let replies = Arc::new(Mutex::new(replies.iter().map(|(s, b)| (*s, b.to_string())).collect::<Vec<_>>()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let cycle = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r2, q2, c2) = (replies.clone(), requests.clone(), cycle.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                // The body too (drift --notify posts JSON).
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                head.push_str("\r\n");
                head.push_str(&String::from_utf8_lossy(&body));
                q2.lock().unwrap().push(head);
                let (status, body) = {
                    let mut r = r2.lock().unwrap();
                    if c2.load(std::sync::atomic::Ordering::SeqCst) {
                        let next = r.remove(0);
                        r.push(next.clone());
                        next
                    } else if r.len() > 1 {
                        r.remove(0)
                    } else {
                        r[0].clone()
                    }
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.flush();
                let mut rest = [0u8; 0];
                let _ = reader.read(&mut rest);
            }
        });
        Server { host: host.to_string(), port, replies, requests, cycle }
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.port)
    }
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
    pub fn reply(&self, status: u16, body: &str) {
        *self.replies.lock().unwrap() = vec![(status, body.to_string())];
    }
    /// Answers with `replies` in order from now on, round and round (a server that keeps
    /// changing its mind, for the fuzz tests).
    pub fn cycle(&self, replies: &[(u16, String)]) {
        assert!(!replies.is_empty());
        *self.replies.lock().unwrap() = replies.to_vec();
        self.cycle.store(true, std::sync::atomic::Ordering::SeqCst);
        self.requests.lock().unwrap().clear();
    }
}
