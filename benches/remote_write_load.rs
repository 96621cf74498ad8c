//! End-to-end remote-write load benchmark: scalecast vs Prometheus, same run.
//!
//! Replays realistic remote-write requests (node_exporter-like label sets, 500
//! samples per request, several concurrent connections) against a release
//! `scalecast serve` and against Prometheus 2.42 started with
//! `--web.enable-remote-write-receiver`, then prints samples/s for each, the
//! ratio, and scalecast's samples per CPU-second (from /proc).
//!
//! ```sh
//! cargo bench --bench remote_write_load            # builds scalecast in release first
//! DURATION_SECS=20 CONNECTIONS=16 cargo bench --bench remote_write_load
//! ```
//! Not a pass/fail test: it prints numbers for docs/performance.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use scalecast::sources::prompb::{self, WriteRequest};
use scalecast::sources::remote_write::compress;

const SAMPLES_PER_REQUEST: usize = 500;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// node_exporter-like series for one instance (~500 series, realistic labels).
fn instance_series(instance: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let base = |extra: &[(&str, String)]| {
        let mut l: Vec<(String, String)> = vec![
            ("instance".into(), instance.to_string()),
            ("job".into(), "node".into()),
        ];
        l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        l.sort();
        l
    };
    for cpu in 0..16 {
        for mode in [
            "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
        ] {
            out.push((
                "node_cpu_seconds_total".to_string(),
                base(&[("cpu", cpu.to_string()), ("mode", mode.to_string())]),
            ));
        }
    }
    for dev in ["sda", "sdb", "nvme0n1", "dm-0"] {
        for m in [
            "node_disk_read_bytes_total",
            "node_disk_written_bytes_total",
            "node_disk_io_time_seconds_total",
            "node_disk_reads_completed_total",
            "node_disk_writes_completed_total",
        ] {
            out.push((m.to_string(), base(&[("device", dev.to_string())])));
        }
    }
    for dev in ["eth0", "eth1", "lo", "docker0"] {
        for m in [
            "node_network_receive_bytes_total",
            "node_network_transmit_bytes_total",
            "node_network_receive_packets_total",
            "node_network_transmit_packets_total",
            "node_network_receive_errs_total",
        ] {
            out.push((m.to_string(), base(&[("device", dev.to_string())])));
        }
    }
    for fs in ["/", "/boot", "/var", "/home"] {
        for m in [
            "node_filesystem_avail_bytes",
            "node_filesystem_size_bytes",
            "node_filesystem_files_free",
        ] {
            out.push((
                m.to_string(),
                base(&[
                    ("device", "/dev/sda1".to_string()),
                    ("fstype", "ext4".to_string()),
                    ("mountpoint", fs.to_string()),
                ]),
            ));
        }
    }
    let mut i = 0;
    while out.len() < 500 {
        out.push((format!("node_memory_field_{i}_bytes"), base(&[])));
        i += 1;
    }
    out
}

/// Request bodies for one connection: `rounds` rounds over its series, each
/// sample 1 s after the previous of its series (so Prometheus accepts them).
fn bodies_for(conn: usize, instances: usize, rounds: usize, t0: i64) -> Vec<Vec<u8>> {
    let series: Vec<(String, Vec<(String, String)>)> = (0..instances)
        .flat_map(|i| instance_series(&format!("10.{conn}.{i}.1:9100")))
        .collect();
    // One request template per chunk; each round only changes the samples.
    let mut templates: Vec<WriteRequest> = series
        .chunks(SAMPLES_PER_REQUEST)
        .map(|chunk| WriteRequest {
            timeseries: chunk
                .iter()
                .map(|(name, labels)| {
                    let mut l = vec![prompb::Label {
                        name: "__name__".into(),
                        value: name.clone(),
                    }];
                    l.extend(labels.iter().map(|(k, v)| prompb::Label {
                        name: k.clone(),
                        value: v.clone(),
                    }));
                    l.sort_by(|a, b| a.name.cmp(&b.name));
                    prompb::TimeSeries {
                        labels: l,
                        samples: vec![prompb::Sample::default()],
                    }
                })
                .collect(),
            metadata: Vec::new(),
        })
        .collect();
    let mut out = Vec::with_capacity(rounds * templates.len());
    let mut raw = Vec::new();
    for round in 0..rounds {
        let ts = t0 + round as i64 * 1000;
        for req in &mut templates {
            for (j, s) in req.timeseries.iter_mut().enumerate() {
                s.samples[0] = prompb::Sample {
                    value: (round * 1000 + j) as f64 * 0.25,
                    timestamp: ts,
                };
            }
            raw.clear();
            // Encoding into a Vec cannot run out of space.
            let _ = req.encode(&mut raw);
            out.push(compress(&raw));
        }
    }
    out
}

struct Proc(Child);

impl Proc {
    /// Stops the process gracefully (SIGTERM; scalecast flushes its head to
    /// Parquet) and returns its total CPU seconds, read while it is a zombie.
    fn stop_and_cpu(&mut self) -> f64 {
        let pid = self.0.id();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut cpu = cpu_secs(pid);
        while Instant::now() < deadline {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                break;
            };
            cpu = cpu.max(cpu_secs(pid));
            if stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                == Some("Z")
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        cpu
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(19201)
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

struct RunResult {
    ok_samples: u64,
    errors: u64,
    secs: f64,
    /// Receiver CPU seconds while the load ran.
    cpu: f64,
    /// Receiver CPU seconds from the start of the load to its exit (for
    /// scalecast this includes writing every acknowledged sample to Parquet).
    cpu_to_exit: f64,
    /// CPU seconds of this load generator while the load ran.
    loadgen_cpu: f64,
    /// Idle CPU seconds of the whole machine while the load ran.
    idle: f64,
}

/// Idle CPU seconds of the machine so far (first line of /proc/stat).
fn machine_idle_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let f: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    (f.get(3).copied().unwrap_or(0.0) + f.get(4).copied().unwrap_or(0.0)) / 100.0
}

async fn drive(
    url: String,
    bodies: Vec<Arc<Vec<Vec<u8>>>>,
    duration: Duration,
    pid: u32,
) -> RunResult {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_secs(pid);
    let (self0, idle0) = (cpu_secs(std::process::id()), machine_idle_secs());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for conn_bodies in bodies {
        let (url, ok, errors) = (url.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            for b in conn_bodies.iter() {
                if started.elapsed() >= duration {
                    break;
                }
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .header("Content-Encoding", "snappy")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(b.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        ok.fetch_add(SAMPLES_PER_REQUEST as u64, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!(
                                "  error answer {}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default().trim()
                            );
                        }
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("  request failed: {e}");
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    RunResult {
        ok_samples: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        secs,
        cpu: cpu_secs(pid) - cpu0,
        cpu_to_exit: -cpu0,
        loadgen_cpu: cpu_secs(std::process::id()) - self0,
        idle: machine_idle_secs() - idle0,
    }
}

async fn wait_ready(url: &str) -> bool {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn scalecast_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SCALECAST_BIN") {
        return PathBuf::from(p);
    }
    // The bench runs from target/release/deps; the binary is one level up.
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("scalecast"))
        .unwrap_or_else(|| PathBuf::from("scalecast"))
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let duration = Duration::from_secs(env_or("DURATION_SECS", 15));
    let connections: usize = env_or("CONNECTIONS", 8);
    let instances: usize = env_or("INSTANCES_PER_CONNECTION", 10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().expect("tmp");
    let t0 = chrono::Utc::now().timestamp_millis() - 20 * 60 * 1000;
    // Enough rounds that no connection runs out within `duration` at up to
    // 3M samples/s.
    let rounds: usize = env_or(
        "ROUNDS",
        (3_000_000 * duration.as_secs() as usize)
            .div_ceil(connections * instances * SAMPLES_PER_REQUEST)
            .max(1),
    );
    eprintln!(
        "generating {connections} × {rounds} rounds × {instances} instances × 500 series ..."
    );
    let bodies: Vec<Arc<Vec<Vec<u8>>>> = (0..connections)
        .map(|c| Arc::new(bodies_for(c, instances, rounds, t0)))
        .collect();
    let total: usize = bodies.iter().map(|b| b.len()).sum();
    let mean_body = bodies
        .iter()
        .flat_map(|b| b.iter())
        .map(|b| b.len())
        .sum::<usize>()
        / total.max(1);
    eprintln!("{total} requests of {SAMPLES_PER_REQUEST} samples, mean body {mean_body} bytes");

    let bin = scalecast_bin();
    let sc_port = free_port();
    let sc_dir = tmp.path().join("scalecast");
    let mut sc = Proc(
        Command::new(&bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{sc_port}"),
                "--data-dir",
            ])
            .arg(&sc_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (build it with cargo build --release)",
                    bin.display()
                )
            }),
    );
    let mut sc_result = rt.block_on(async {
        assert!(
            wait_ready(&format!("http://127.0.0.1:{sc_port}/health")).await,
            "scalecast did not start"
        );
        drive(
            format!("http://127.0.0.1:{sc_port}/api/v1/write"),
            bodies.clone(),
            duration,
            sc.0.id(),
        )
        .await
    });
    sc_result.cpu_to_exit += sc.stop_and_cpu();
    drop(sc);

    let prom_result = if Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        let port = free_port();
        let dir = tmp.path().join("prom");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("prometheus.yml"),
            "global:\n  scrape_interval: 15s\n",
        )
        .expect("cfg");
        let mut prom = Proc(
            Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--web.enable-remote-write-receiver")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("prometheus"),
        );
        let mut r = rt.block_on(async {
            assert!(
                wait_ready(&format!("http://127.0.0.1:{port}/-/ready")).await,
                "prometheus did not start"
            );
            drive(
                format!("http://127.0.0.1:{port}/api/v1/write"),
                bodies.clone(),
                duration,
                prom.0.id(),
            )
            .await
        });
        r.cpu_to_exit += prom.stop_and_cpu();
        drop(prom);
        Some(r)
    } else {
        eprintln!("prometheus not installed (scripts/install-deps.sh installs it): no comparison");
        None
    };

    let rate = |r: &RunResult| r.ok_samples as f64 / r.secs;
    println!(
        "\nremote-write load: {connections} connections, 500 samples/request, {:.0} s each",
        duration.as_secs_f64()
    );
    println!(
        "| receiver | samples/s | errors | CPU-s under load | samples per CPU-s | CPU-s to exit | samples per CPU-s to exit |"
    );
    println!("|---|---|---|---|---|---|---|");
    let row = |label: &str, r: &RunResult| {
        println!(
            "| {label} | {:.0} | {} | {:.1} | {:.0} | {:.1} | {:.0} |",
            rate(r),
            r.errors,
            r.cpu,
            r.ok_samples as f64 / r.cpu.max(1e-9),
            r.cpu_to_exit,
            r.ok_samples as f64 / r.cpu_to_exit.max(1e-9)
        )
    };
    row("scalecast (fsync per group commit)", &sc_result);
    if let Some(p) = &prom_result {
        row("Prometheus 2.42 receiver", p);
    }
    let machine = |label: &str, r: &RunResult| {
        println!(
            "{label}: load generator {:.1} CPU-s, machine idle {:.1} CPU-s over {:.1} s",
            r.loadgen_cpu, r.idle, r.secs
        )
    };
    machine("scalecast run", &sc_result);
    if let Some(p) = &prom_result {
        machine("Prometheus run", p);
        println!(
            "ratio scalecast / Prometheus (samples/s): {:.2}",
            rate(&sc_result) / rate(p).max(1e-9)
        );
    }
}
