//! A private `nats-server -js` for a test or a benchmark: its own port on
//! 127.0.0.1 and its own store directory, stopped when dropped — never the
//! machine's server on 4222. Included with `#[path]` by the suites and
//! benchmarks that export to NATS.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where `nats-server` is, or a panic saying how to install it.
pub fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nats-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin/nats-server", "/usr/local/bin/nats-server"].map(PathBuf::from))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed: the NATS export tests and benchmark run a real \
                 JetStream server. Install it with `apt-get install nats-server` (.ci/run does)."
            )
        })
}

/// A free port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

pub struct NatsServer {
    child: Child,
    pub port: u16,
    pub url: String,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// A server with JetStream on a free port, ready for clients.
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// A server with JetStream on `port`, ready: it answered a JetStream
    /// request (connection attempts are retried until then, at most 30 s).
    pub async fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("a store directory");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("a log file");
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path().join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        let mut server = Self {
            child,
            port,
            url: format!("nats://127.0.0.1:{port}"),
            dir,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "nats-server exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            let attempt = tokio::time::timeout(Duration::from_secs(2), async {
                let client = async_nats::connect(&self.url).await.ok()?;
                // Any answer of the JetStream API (no "no responders").
                client.request("$JS.API.INFO", "".into()).await.ok()
            })
            .await;
            if let Ok(Some(_)) = attempt {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server on port {} not ready after 30 s:\n{}",
                self.port,
                self.log()
            );
            // Refused: the server is still starting; try again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.url)
            .await
            .expect("connect to the test nats-server")
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client().await)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
