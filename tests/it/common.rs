//! Helpers shared by the black-box tests.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scalecast::config::PipelineConfig;
use scalecast::pipeline::Server;
use scalecast::schema::Sample;
use scalecast::sources::remote_write::encode_samples;

/// Starts an in-process server on a free port with `yaml` (or the default).
pub async fn start_server(dir: &Path, yaml: Option<&str>) -> Server {
    let cfg = match yaml {
        Some(y) => {
            PipelineConfig::load_str(y, Path::new("test.yaml")).expect("valid test pipeline")
        }
        None => PipelineConfig::embedded_default(),
    };
    Server::start(cfg, dir, Some("127.0.0.1:0"))
        .await
        .expect("server starts")
}

/// A sample of metric `name` with labels.
pub fn sample(name: &str, labels: &[(&str, &str)], ts_ms: i64, value: f64) -> Sample {
    Sample::new(name, labels, ts_ms, value)
}

/// A remote-write body (snappy + protobuf) for `samples`.
pub fn body(samples: &[Sample]) -> Vec<u8> {
    encode_samples(samples)
}

/// POSTs a remote-write body with the right headers.
pub async fn post_write(
    client: &reqwest::Client,
    addr: SocketAddr,
    body: Vec<u8>,
) -> reqwest::Response {
    client
        .post(format!("http://{addr}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("request sent")
}

/// Runs SQL over HTTP and returns the JSON rows.
pub async fn sql(
    client: &reqwest::Client,
    addr: SocketAddr,
    query: &str,
) -> Vec<serde_json::Value> {
    let r = client
        .post(format!("http://{addr}/api/v1/sql"))
        .json(&serde_json::json!({ "query": query }))
        .send()
        .await
        .expect("sql request");
    let status = r.status();
    let text = r.text().await.expect("sql body");
    assert!(
        status.is_success(),
        "SQL {query:?} failed with {status}: {text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON rows");
    v.as_array().cloned().expect("array of rows")
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Kills the child process when dropped.
pub struct ChildGuard {
    pub child: Option<Child>,
    pub name: String,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> ChildGuard {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log clone");
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard {
            child: Some(child),
            name: name.into(),
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (graceful).
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// GETs `url` and parses the JSON answer; `None` on any failure, for
/// polling with [`wait_for`].
pub async fn try_get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Option<T> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// GETs `url`; panics naming the URL when there is no answer.
async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GETs `url` and parses the JSON answer; panics naming the URL on failure.
pub async fn get_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: &str) -> T {
    get(client, url)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not the expected JSON: {e}"))
}

/// GETs `url` as text; panics naming the URL on failure.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    get(client, url)
        .await
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body: {e}"))
}

/// Polls `f` until it returns Some or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The scalecast binary built for these tests.
pub fn scalecast_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_scalecast"))
}

/// Starts `scalecast serve` as a child process and waits until /health is 200.
pub async fn spawn_scalecast(
    data_dir: &Path,
    config: Option<&Path>,
    log: &Path,
) -> (ChildGuard, SocketAddr) {
    let _ = std::fs::remove_file(data_dir.join("api.addr"));
    let mut cmd = Command::new(scalecast_bin());
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let guard = ChildGuard::spawn("scalecast", &mut cmd, log);
    let addr_file = data_dir.join("api.addr");
    let client = reqwest::Client::new();
    let addr: SocketAddr = wait_for(Duration::from_secs(60), "scalecast to be ready", || {
        let addr_file = addr_file.clone();
        let client = client.clone();
        async move {
            let addr: SocketAddr = std::fs::read_to_string(&addr_file)
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let r = client
                .get(format!("http://{addr}/health"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(addr)
        }
    })
    .await;
    (guard, addr)
}

/// True if `bin` is on PATH.
pub fn have(bin: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs Debian packages if `bin` is missing. Returns Err(reason) when impossible.
pub fn ensure_apt(bin: &str, packages: &[&str]) -> Result<(), String> {
    if have(bin) {
        return Ok(());
    }
    let script = format!(
        "(apt-get install -y -qq --no-install-recommends {pk} || (apt-get update -qq && apt-get install -y -qq --no-install-recommends {pk})) >/dev/null 2>&1",
        pk = packages.join(" ")
    );
    let ok = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if ok && have(bin) {
        Ok(())
    } else {
        Err(format!(
            "`{bin}` is missing and `apt-get install {}` failed",
            packages.join(" ")
        ))
    }
}

/// Installs moto (idempotent) and starts it on a free port; None (after
/// printing why) when it cannot be installed.
pub fn start_moto(dir: &Path) -> Option<(ChildGuard, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-moto.sh");
    let out = Command::new("bash").arg(&script).output();
    let moto = match out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string())
        }
        Ok(o) => {
            eprintln!(
                "SKIP: moto cannot be installed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return None;
        }
        Err(e) => {
            eprintln!("SKIP: cannot run {}: {e}", script.display());
            return None;
        }
    };
    let port = free_port();
    let guard = ChildGuard::spawn(
        "moto_server",
        Command::new(moto)
            .arg("-H")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string()),
        &dir.join("moto.log"),
    );
    Some((guard, format!("http://127.0.0.1:{port}")))
}

pub async fn wait_moto(url: &str) {
    let client = reqwest::Client::new();
    wait_for(Duration::from_secs(60), "moto to answer", || {
        let client = client.clone();
        let u = format!("{url}/moto-api/");
        async move {
            let r = client.get(u).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
}
