//! A moto server (a real AWS API emulator from PyPI) on a loopback port, for
//! tests of AWS code that must speak the actual wire protocol. One server per
//! test keeps tests independent; it is killed when the handle is dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a fresh moto_server may take to answer (Python imports are slow).
const STARTUP_LIMIT: Duration = Duration::from_secs(15);
/// A slow machine may miss the start-up limit once.
const START_ATTEMPTS: usize = 3;

/// A running `moto_server` bound to 127.0.0.1.
pub struct MotoServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers HTTP.
    ///
    /// The program is `$FTSLM_MOTO_SERVER`, else `.venv/bin/moto_server` at the
    /// repository root, else `moto_server` on `PATH`. When none exists this panics
    /// under `CI=true` and otherwise prints a note and returns `None`, so the
    /// caller can skip. A moto that exists but does not come up always panics:
    /// that is a broken setup, not a missing one.
    pub fn start() -> Option<MotoServer> {
        let Some(program) = find_program() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "moto_server not found (FTSLM_MOTO_SERVER, .venv/bin/moto_server, PATH): \
                     CI must install it (pip install 'moto[server]')"
                );
            }
            eprintln!(
                "skipping: moto_server not found; pip install 'moto[server]' to run this test"
            );
            return None;
        };
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match try_start(&program) {
                Ok(server) => return Some(server),
                Err(failure) => last_failure = failure,
            }
        }
        panic!(
            "{} did not start after {START_ATTEMPTS} attempts: {last_failure}",
            program.display()
        );
    }

    /// `http://127.0.0.1:PORT`, for `endpoint_url` of an AWS SDK client.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Kill errors mean it already exited; either way nothing is left to stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn find_program() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FTSLM_MOTO_SERVER") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            panic!(
                "FTSLM_MOTO_SERVER={} is not a file: point it at moto_server or unset it",
                path.display()
            );
        }
        return Some(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
}

/// moto binds port 0 and logs the port the system gave it. Choosing a free
/// port here and passing it on would race: two tests starting at once could
/// pick the same one, and the loser would talk to the winner's server until
/// that test ended and killed it.
fn try_start(program: &Path) -> Result<MotoServer, String> {
    static STARTS: AtomicUsize = AtomicUsize::new(0);
    let n = STARTS.fetch_add(1, Ordering::SeqCst);
    let log = std::env::temp_dir().join(format!("ftslm-moto-{}-{n}.log", std::process::id()));
    let log_file =
        File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("cannot reuse {}: {e}", log.display()))?;
    // Output goes to a file, not a pipe: moto logs every request and would block
    // on a pipe nobody reads.
    let child = Command::new(program)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let mut server = MotoServer {
        child,
        port: 0,
        log,
    };
    let deadline = Instant::now() + STARTUP_LIMIT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("exited with {status}: {}", log_tail(&server.log)));
        }
        if server.port == 0 {
            server.port = bound_port(&server.log).unwrap_or(0);
        }
        if server.port != 0 && answers_http(server.port) {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tail = log_tail(&server.log);
    let port = server.port;
    drop(server);
    Err(format!(
        "no answer (port {port}) within {}s: {tail}",
        STARTUP_LIMIT.as_secs()
    ))
}

/// The port of werkzeug's "Running on http://127.0.0.1:PORT" line.
fn bound_port(log: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    let at = text.find("Running on http://127.0.0.1:")?;
    let rest = &text[at + "Running on http://127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn answers_http(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
