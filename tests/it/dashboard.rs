//! The dashboard in a real browser: headless Chromium driven by chromedriver
//! through plain W3C WebDriver HTTP calls.
//!
//! Starts a server with the demo pipeline (the shipped NAB trace replayed with
//! prefill, a forecast-only scaling target), opens `/`, and checks the targets
//! table, the forecast band on the chart, a SQL query typed into the box, a
//! non-blank screenshot and an empty browser console.
//! Set `SCALECAST_DASHBOARD_SCREENSHOT=path.png` to keep a copy of the
//! screenshot (that is how `docs/dashboard.png` is made).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common;

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start(log: &Path) -> Driver {
        let port = common::free_port();
        let out = std::fs::File::create(log).expect("chromedriver log");
        let err = out.try_clone().expect("log clone");
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("chromedriver starts");
        let d = Driver { child, port };
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/status");
        common::wait_for(Duration::from_secs(20), "chromedriver /status", || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let v: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
                v["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        d
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session; deleted on drop (also when a check panics), so no
/// Chromium is left behind.
struct Session {
    client: reqwest::Client,
    port: u16,
    id: String,
    closed: bool,
}

impl Session {
    async fn new(driver: &Driver, profile: &Path) -> Session {
        let client = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-extensions", "--disable-sync",
                "--disable-component-update", "--disable-default-apps", "--no-first-run",
                "--metrics-recording-only", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--window-size=1440,1000",
                format!("--user-data-dir={}", profile.display()),
            ]}
        }}});
        let r: Value = client
            .post(format!("http://127.0.0.1:{}/session", driver.port))
            .json(&caps)
            .send()
            .await
            .expect("new session request")
            .json()
            .await
            .expect("new session JSON");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        Session {
            client,
            port: driver.port,
            id,
            closed: false,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/session/{}{path}", self.port, self.id)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r: Value = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: JSON: {e}"));
        if r["value"].get("error").is_some() {
            panic!("POST {path} failed: {r}");
        }
        r["value"].clone()
    }

    async fn get(&self, path: &str) -> Value {
        let r: Value = self
            .client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: JSON: {e}"));
        r["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    async fn js(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Polls `script` until it returns something other than null/false.
    async fn wait_js(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.js(script, json!([])).await;
            if !(v.is_null() || v == Value::Bool(false)) {
                return v;
            }
            if Instant::now() > deadline {
                let status = self
                    .js(
                        "return document.getElementById('status').textContent",
                        json!([]),
                    )
                    .await;
                panic!("timed out after {timeout:?} waiting for {what} (page status: {status})");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// Types `query` into the dashboard's SQL box and presses Run.
    async fn run_sql(&self, query: &str) {
        let q = self.element("#sql-query").await;
        self.post(&format!("/element/{q}/clear"), json!({})).await;
        self.post(&format!("/element/{q}/value"), json!({ "text": query }))
            .await;
        let run = self.element("#sql-run").await;
        self.post(&format!("/element/{run}/click"), json!({})).await;
    }

    async fn screenshot(&self) -> Vec<u8> {
        let v = self.get("/screenshot").await;
        base64_decode(v.as_str().expect("base64 screenshot")).expect("valid base64")
    }

    /// Browser console entries (chromedriver's log endpoint).
    async fn browser_log(&self) -> Vec<Value> {
        let r: Value = self
            .client
            .post(self.url("/se/log"))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .expect("log request")
            .json()
            .await
            .expect("log JSON");
        match &r["value"] {
            Value::Array(a) => a.clone(),
            other => panic!("browser log not available: {other}"),
        }
    }

    async fn close(mut self) {
        let _ = self.client.delete(self.url("")).send().await;
        self.closed = true;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // A blocking DELETE over a plain socket: Drop can not await.
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.id
            );
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
}

/// Standard base64 (the screenshot encoding).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((w, h))
}

fn shipped_trace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/nab/realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv")
}

/// Installs Chromium and chromedriver (idempotent); false, after printing why
/// `test` is skipped, when that is impossible.
fn browser_installed(test: &str) -> bool {
    match common::ensure_apt("chromium", &["chromium"])
        .and_then(|_| common::ensure_apt("chromedriver", &["chromium-driver"]))
    {
        Ok(()) => true,
        Err(why) => {
            println!("SKIPPED {test}: {why}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    if !browser_installed("dashboard_in_headless_chromium") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let trace = shipped_trace();
    assert!(
        trace.exists(),
        "shipped trace {} is missing",
        trace.display()
    );
    // The demo pipeline as `scalecast demo` runs it (60x, two days of prefill).
    let yaml = scalecast::config::demo_pipeline(&trace);
    let server = common::start_server(&tmp.path().join("data"), Some(&yaml)).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();

    // The scaling loop has decided at least once (the prefill gives it history).
    let targets: Vec<Value> = common::wait_for(
        Duration::from_secs(90),
        "a recommendation for target web",
        || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let v: Value =
                    common::try_get_json(&http, &format!("{base}/api/v1/targets")).await?;
                let a = v.as_array()?.clone();
                a.iter()
                    .any(|t| t["name"] == "web" && t["recommended_replicas"].is_u64())
                    .then_some(a)
            }
        },
    )
    .await;
    assert_eq!(targets.len(), 1, "{targets:?}");

    let driver = Driver::start(&tmp.path().join("chromedriver.log")).await;
    let session = Session::new(&driver, &tmp.path().join("profile")).await;

    // Baseline: a blank page's screenshot size, to tell a blank shot apart.
    session.goto("about:blank").await;
    let blank = session.screenshot().await;

    session.goto(&format!("{base}/")).await;
    let title = session.js("return document.title", json!([])).await;
    assert_eq!(title, "scalecast dashboard");

    // Targets table: the row of `web` with its recommended replicas.
    let shown = session
        .wait_js(
            "the targets table row of web",
            Duration::from_secs(30),
            "const td = document.querySelector('#targets tr[data-target=\"web\"] td.recommended');
             return td && /^\\d+$/.test(td.textContent) ? td.textContent : null;",
        )
        .await;
    let shown: u64 = shown
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("integer replicas");
    let recent: Value = common::get_json(
        &http,
        &format!("{base}/api/v1/recommendations?target=web&limit=1000"),
    )
    .await;
    let recommended: Vec<u64> = recent
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["recommended_replicas"].as_u64())
        .collect();
    assert!(
        recommended.contains(&shown),
        "page shows {shown} recommended replicas; the API recorded {recommended:?}"
    );

    // Chart: forecast points, and the p10–p90 band actually painted.
    let band = session
        .wait_js(
            "the forecast band on the chart",
            Duration::from_secs(90),
            "const d = document.getElementById('timeline-chart');
             const c = d.querySelector('canvas');
             if (!c || !(+d.dataset.forecastPoints > 0) || !(+d.dataset.demandPoints > 0)) return null;
             const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             // The band's fill, rgba(31,111,235,0.18): that colour at about 18 % alpha
             // (the canvas is transparent; lines are opaque).
             let n = 0;
             for (let i = 0; i < px.length; i += 4) {
               if (Math.abs(px[i] - 31) < 10 && Math.abs(px[i+1] - 111) < 10 && Math.abs(px[i+2] - 235) < 10
                   && px[i+3] > 25 && px[i+3] < 70) n++;
             }
             return n > 200 ? {pixels: n, forecast: +d.dataset.forecastPoints} : null;",
        )
        .await;
    assert!(band["pixels"].as_u64().unwrap_or(0) > 200, "{band}");
    let legend = session
        .js(
            "return Array.from(document.querySelectorAll('#timeline-chart .u-legend .u-label')).map(e => e.textContent)",
            json!([]),
        )
        .await;
    for label in [
        "demand",
        "provisioned capacity",
        "forecast p10",
        "forecast p90",
    ] {
        assert!(
            legend
                .as_array()
                .is_some_and(|a| a.iter().any(|l| l == label)),
            "legend {legend} lacks {label}"
        );
    }

    // SQL: type a query, run it, rows and a chart appear.
    session
        .run_sql(
            "SELECT ts, value FROM samples WHERE name = 'web_demand' ORDER BY ts DESC LIMIT 25",
        )
        .await;
    let rows = session
        .wait_js(
            "SQL result rows",
            Duration::from_secs(30),
            "const n = document.querySelectorAll('#sql-result tbody tr').length;
             const s = document.getElementById('sql-status');
             if (s.classList.contains('error')) return 'error: ' + s.textContent;
             return n > 0 ? n : null;",
        )
        .await;
    assert_eq!(rows, json!(25), "SQL rows");
    let sql_chart = session
        .js(
            "const d = document.getElementById('sql-chart'); return [d.hidden, d.dataset.series, !!d.querySelector('canvas')]",
            json!([]),
        )
        .await;
    assert_eq!(sql_chart, json!([false, "1", true]), "SQL chart");
    let headers = session
        .js(
            "return Array.from(document.querySelectorAll('#sql-result thead th')).map(e => e.textContent)",
            json!([]),
        )
        .await;
    assert_eq!(headers, json!(["ts", "value"]));

    // Live refresh: the health panel fills in samples/s after two polls.
    session
        .wait_js(
            "samples/s in the health panel",
            Duration::from_secs(20),
            "const dts = Array.from(document.querySelectorAll('#health dt'));
             const dt = dts.find(e => e.textContent === 'Samples/s');
             return dt && dt.nextElementSibling.textContent !== '–' ? dt.nextElementSibling.textContent : null;",
        )
        .await;

    // Screenshot: a PNG of the window, far from blank.
    let shot = session.screenshot().await;
    let (w, h) = png_size(&shot).expect("a PNG screenshot");
    assert!(w >= 1000 && h >= 600, "screenshot is {w}x{h}");
    assert!(
        shot.len() > blank.len() * 5 && shot.len() > 30_000,
        "screenshot looks blank: {} bytes (blank page: {} bytes)",
        shot.len(),
        blank.len()
    );
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, &shot).expect("save screenshot");
    println!("screenshot: {}", out.display());
    if let Ok(keep) = std::env::var("SCALECAST_DASHBOARD_SCREENSHOT") {
        std::fs::write(&keep, &shot).expect("copy screenshot");
    }

    // No console errors (the log includes uncaught exceptions and failed loads).
    let log = session.browser_log().await;
    let errors: Vec<&Value> = log.iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");

    session.close().await;
    drop(driver);
    server.shutdown().await;
}

/// With `api.auth` on, the page asks for the token at once, keeps it in
/// `sessionStorage` and sends it: a query typed into the SQL box then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_asks_for_the_token() {
    if !browser_installed("dashboard_asks_for_the_token") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let token = "dashboard-test-token-7f3a";
    let yaml = format!(
        "api:\n  listen: 127.0.0.1:0\n  auth:\n    bearer_token: {token}\nsources:\n  prometheus:\n    type: remote_write\n"
    );
    let server = common::start_server(&tmp.path().join("data"), Some(&yaml)).await;
    let base = format!("http://{}", server.addr);
    let now = chrono::Utc::now().timestamp_millis();
    let samples: Vec<_> = (0..7)
        .map(|i| common::sample("auth_probe", &[("job", "t")], now - i * 1000, i as f64))
        .collect();
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("Authorization", format!("Bearer {token}"))
        .body(common::body(&samples))
        .send()
        .await
        .expect("write");
    assert!(r.status().is_success(), "write: {}", r.status());

    let driver = Driver::start(&tmp.path().join("chromedriver.log")).await;
    let session = Session::new(&driver, &tmp.path().join("profile")).await;
    session.goto(&format!("{base}/")).await;
    session
        .wait_js(
            "the token form",
            Duration::from_secs(20),
            "return !document.getElementById('auth').hidden",
        )
        .await;
    let field = session.element("#token").await;
    session
        .post(&format!("/element/{field}/value"), json!({ "text": token }))
        .await;
    let submit = session.element("#auth button[type=submit]").await;
    session
        .post(&format!("/element/{submit}/click"), json!({}))
        .await;
    let kept = session
        .js(
            "return [sessionStorage.getItem('scalecast_token'), document.getElementById('auth').hidden]",
            json!([]),
        )
        .await;
    assert_eq!(kept, json!([token, true]));

    session
        .run_sql("SELECT count(*) AS n FROM samples WHERE name = 'auth_probe'")
        .await;
    let n = session
        .wait_js(
            "the SQL result with the token",
            Duration::from_secs(20),
            "const s = document.getElementById('sql-status');
             if (s.classList.contains('error')) return 'error: ' + s.textContent;
             const td = document.querySelector('#sql-result tbody td');
             return td ? td.textContent : null;",
        )
        .await;
    assert_eq!(n, json!("7"));

    let log = session.browser_log().await;
    let errors: Vec<&Value> = log.iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    session.close().await;
    drop(driver);
    server.shutdown().await;
}
