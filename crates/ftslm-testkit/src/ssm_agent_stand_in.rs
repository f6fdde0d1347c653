//! moto has no `DescribeInstanceInformation` (whether an instance's SSM agent is
//! online), so a command that waits for the agent cannot run against moto
//! alone. This loopback proxy stands in for that one API — it reports the
//! agent of every instance asked about as `Online` — and forwards every other
//! request, byte for byte, to the moto server behind it. Tests point
//! `AWS_ENDPOINT_URL` at the proxy and the binary runs unchanged.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const TARGET_HEADER: &str = "x-amz-target";
const DESCRIBE_INSTANCE_INFORMATION: &str = "AmazonSSM.DescribeInstanceInformation";

/// A running proxy; stops accepting when dropped.
pub struct SsmAgentStandIn {
    port: u16,
    stopping: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
}

impl SsmAgentStandIn {
    /// Starts the proxy in front of `upstream` (e.g. `127.0.0.1:PORT` of moto).
    pub fn start(upstream_port: u16) -> SsmAgentStandIn {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
        let port = listener.local_addr().expect("bound address").port();
        let stopping = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let (stop, count) = (stopping.clone(), answered.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let count = count.clone();
                thread::spawn(move || serve(stream, upstream_port, &count));
            }
        });
        SsmAgentStandIn {
            port,
            stopping,
            answered,
        }
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many `DescribeInstanceInformation` calls the stand-in answered.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

impl Drop for SsmAgentStandIn {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

/// One request per connection: the answer carries `Connection: close`, which
/// the SDK's HTTP client honours by opening a new connection for the next call.
fn serve(client: TcpStream, upstream_port: u16, answered: &AtomicUsize) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match client.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut head = Vec::new();
    let mut content_length = 0usize;
    let mut target = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if let Some(v) = lower.strip_prefix(&format!("{TARGET_HEADER}:")) {
            target = v.trim().to_string();
        }
        // The proxy answers one request per connection.
        if lower.starts_with("connection:") {
            continue;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0u8; content_length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut client = client;
    if target.eq_ignore_ascii_case(DESCRIBE_INSTANCE_INFORMATION) {
        answered.fetch_add(1, Ordering::SeqCst);
        let reply = instance_information(&body);
        let _ = write!(
            client,
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        );
        let _ = client.shutdown(Shutdown::Write);
        return;
    }
    let Ok(mut upstream) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port)) else {
        let _ = client.write_all(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    if upstream.write_all(&head).is_err() || upstream.write_all(&body).is_err() {
        return;
    }
    let mut response = Vec::new();
    if upstream.read_to_end(&mut response).is_ok() {
        let _ = client.write_all(&response);
    }
    let _ = client.shutdown(Shutdown::Write);
}

/// Every instance id of the request's `InstanceIds` filter (either filter
/// shape the API accepts), reported online.
fn instance_information(request: &[u8]) -> String {
    let request: serde_json::Value = serde_json::from_slice(request).unwrap_or_default();
    let mut ids: Vec<&str> = Vec::new();
    for (list, key, values) in [
        ("Filters", "Key", "Values"),
        ("InstanceInformationFilterList", "key", "valueSet"),
    ] {
        for filter in request[list].as_array().into_iter().flatten() {
            if filter[key] == "InstanceIds" {
                ids.extend(
                    filter[values]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str()),
                );
            }
        }
    }
    let entries: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({
                "InstanceId": id,
                "PingStatus": "Online",
                "PlatformType": "Linux",
                "AgentVersion": "3.3.0.0",
                "ResourceType": "EC2Instance",
            })
        })
        .collect();
    serde_json::json!({ "InstanceInformationList": entries }).to_string()
}
