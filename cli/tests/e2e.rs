//! End to end over a socket: `fleetstream run`, driven for a few seconds by `fleetstream
//! simulate`, while a client follows a trip over Server-Sent Events; then a wallet balance and
//! the overtime export, read through the API. Also the dashboard in headless Chromium
//! (`api/tests/e2e/dashboard.mjs`, playwright-core) and a schema-driven fuzz run (schemathesis
//! against `/openapi.json`); both tools are installed by `scripts/setup.sh`.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rust_decimal::Decimal;
use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetstream")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn token(dir: &Path, role: &str) -> String {
    let out = Command::new(bin())
        .args(["token", "--role", role, "--sub", "e2e", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads SSE frames `(event, data)` from a response until `stop` says so or `limit` passes.
async fn frames(
    response: reqwest::Response,
    limit: Duration,
    stop: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut out = Vec::new();
    let started = Instant::now();
    while started.elapsed() < limit && !stop(&out) {
        let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_millis(500), stream.next()).await
        else {
            continue;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let Ok(value) = serde_json::from_str(&data) {
                out.push((event, value));
            }
        }
    }
    out
}

/// A `fleetstream run` with its API on a free loopback port.
struct Server {
    url: String,
    data: std::path::PathBuf,
    run: Option<Running>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut child = Command::new(bin())
            .args(["run", "--api-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The run prints its admin token and where the API listens.
        let stderr = child.stderr.take().unwrap();
        let run = Running(child);
        let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let client = reqwest::Client::new();
        let started = Instant::now();
        let mut log = Vec::new();
        loop {
            while let Ok(line) = lines_rx.try_recv() {
                log.push(line);
            }
            if client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "not ready:\n{}",
                log.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let printed = Instant::now();
        while !log.iter().any(|l| l.contains("admin token")) && printed.elapsed() < Duration::from_secs(5) {
            match lines_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => log.push(line),
                Err(_) => continue,
            }
        }
        assert!(
            log.iter().any(|l| l.contains("admin token")),
            "no admin token printed:\n{}",
            log.join("\n")
        );
        Server {
            url,
            data,
            run: Some(run),
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_simulate_and_read_through_the_api() {
    let server = Server::start().await;
    let (url, data, client) = (server.url.clone(), server.data.clone(), reqwest::Client::new());
    let app = token(&data, "app");
    let analyst = token(&data, "analyst");
    let hr = token(&data, "hr");

    // Follow the live feed to learn a trip as soon as it is requested.
    let feed = client
        .get(format!("{url}/v1/dashboard/events"))
        .bearer_auth(&app)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let simulate = tokio::task::spawn_blocking({
        let (url, app) = (url.clone(), app.clone());
        move || {
            Command::new(bin())
                .args([
                    "simulate",
                    "--target",
                    &url,
                    "--token",
                    &app,
                    "--drivers",
                    "30",
                    "--riders",
                    "300",
                    "--employees",
                    "3",
                    "--duration",
                    "80s",
                    "--speed",
                    "10x",
                    "--quiet",
                ])
                .output()
                .unwrap()
        }
    });
    let first = frames(feed, Duration::from_secs(30), |f| {
        f.iter().any(|(e, v)| e == "trip" && v["type"] == "requested")
    })
    .await;
    let trip_id = first
        .iter()
        .find(|(e, v)| e == "trip" && v["type"] == "requested")
        .map(|(_, v)| v["trip_id"].as_str().unwrap().to_string())
        .expect("a trip was requested");

    // Once the trip store has it, the trip's own stream: its state first, then what happens to it.
    let started = Instant::now();
    while !client
        .get(format!("{url}/v1/trips/{trip_id}"))
        .bearer_auth(&app)
        .send()
        .await
        .unwrap()
        .status()
        .is_success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{trip_id} never readable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let decided = |(e, v): &(String, Value)| {
        (e == "state"
            && matches!(
                v["status"].as_str(),
                Some("matched" | "started" | "completed" | "no_driver")
            ))
            || (e == "trip" && matches!(v["type"].as_str(), Some("matched" | "no_driver")))
    };
    let events = client
        .get(format!("{url}/v1/trips/{trip_id}/events?access_token={app}"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let frames = frames(events, Duration::from_secs(20), |f| f.iter().any(decided)).await;
    let (first_event, state) = &frames[0];
    assert_eq!(first_event, "state", "{frames:?}");
    assert_eq!(state["trip_id"], trip_id.as_str());
    assert!(
        frames.iter().all(|(_, v)| v["trip_id"] == trip_id.as_str()),
        "{frames:?}"
    );
    assert!(frames.iter().any(decided), "the trip was decided: {frames:?}");

    let out = simulate.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "simulate failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figure = |name: &str| -> u64 {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(if name.contains(' ') { 2 } else { 1 }))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {stdout}"))
    };
    assert!(stdout.contains("0 failed"), "{stdout}");
    assert!(figure("matches") > 0, "{stdout}");
    assert!(figure("top-ups") > 0, "{stdout}");

    // A wallet balance: the richest simulated rider's, and its postings add up to it.
    let top = client
        .post(format!("{url}/v1/sql"))
        .bearer_auth(&analyst)
        .json(&serde_json::json!({"sql": "SELECT account_id FROM wallets WHERE account_id LIKE 'rider:sim-%' ORDER BY balance DESC, account_id LIMIT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(top.status(), 200);
    let top: Value = top.json().await.unwrap();
    let account = top[0]["account_id"].as_str().expect("a rider wallet").to_string();
    let wallet: Value = client
        .get(format!("{url}/v1/wallets/{account}?postings=500"))
        .bearer_auth(&app)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let balance: Decimal = wallet["balance"].as_str().unwrap().parse().unwrap();
    assert!(balance > Decimal::ZERO, "{wallet}");
    let recent = wallet["recent"].as_array().unwrap();
    assert_eq!(
        recent.len() as u64,
        wallet["postings"].as_u64().unwrap(),
        "{wallet}"
    );
    let sum: Decimal = recent
        .iter()
        .map(|p| p["amount"].as_str().unwrap().parse::<Decimal>().unwrap())
        .sum();
    assert_eq!(sum, balance, "{wallet}");

    // The overtime export: every simulated metro driver clocked out during the run.
    let today = chrono::Utc::now().date_naive();
    let export = client
        .get(format!(
            "{url}/v1/exports/overtime?from={}&to={}&format=csv",
            today - chrono::Days::new(2),
            today + chrono::Days::new(1)
        ))
        .bearer_auth(&hr)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    // Streamed as it is written: chunked, with no length known up front.
    assert_eq!(
        export.headers().get("transfer-encoding").map(|v| v.as_bytes()),
        Some(&b"chunked"[..]),
        "{:?}",
        export.headers()
    );
    let csv = export.text().await.unwrap();
    for e in 0..3 {
        assert!(
            csv.lines().any(|l| l.starts_with(&format!("sim-e{e:04},day,"))),
            "sim-e{e:04} missing:\n{csv}"
        );
    }

    // A clean stop.
    let mut server = server;
    let mut run = server.run.take().unwrap();
    let pid = run.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
}

/// `fleetstream simulate` in the background for `secs` simulated seconds at 10x.
fn simulate_in_background(url: &str, token: &str, secs: u64) -> Running {
    Running(
        Command::new(bin())
            .args([
                "simulate",
                "--target",
                url,
                "--token",
                token,
                "--drivers",
                "40",
                "--riders",
                "300",
                "--employees",
                "2",
                "--duration",
                &format!("{secs}s"),
                "--speed",
                "10x",
                "--quiet",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_updates_live_in_headless_chromium() {
    let e2e = repo().join("api/tests/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run scripts/setup.sh",
        e2e.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/setup.sh (Debian package chromium)"
    );
    let server = Server::start().await;
    let app = token(&server.data, "app");
    let _simulation = simulate_in_background(&server.url, &app, 600);
    let shot = std::env::var_os("FLEETSTREAM_SCREENSHOT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
        .join("dashboard.png");
    let out = tokio::task::spawn_blocking({
        let (url, shot) = (server.url.clone(), shot.clone());
        move || {
            Command::new("node")
                .arg("dashboard.mjs")
                .current_dir(&e2e)
                .env("FLEETSTREAM_URL", url)
                .env("FLEETSTREAM_TOKEN", app)
                .env("SCREENSHOT", shot)
                .env("CHROMIUM", chromium)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dashboard e2e failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(report["cells"].as_u64() > Some(0), "{report}");
    assert!(report["feed"].as_u64() > Some(0), "{report}");
    assert!(report["nearby"].as_u64() > Some(0), "{report}");
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG screenshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_driven_fuzz_run_finds_no_server_errors() {
    let cache = std::env::var_os("FLEETSTREAM_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/fleetstream"));
    let st = cache.join("venv/bin/schemathesis");
    assert!(st.exists(), "{} is missing: run scripts/setup.sh", st.display());
    let server = Server::start().await;
    let admin = token(&server.data, "admin");
    let out = tokio::task::spawn_blocking({
        let url = server.url.clone();
        move || {
            Command::new(st)
                .args([
                    "run",
                    &format!("{url}/openapi.json"),
                    "--checks",
                    "not_a_server_error",
                    "--hypothesis-max-examples",
                    "40",
                    "--hypothesis-derandomize",
                    "--request-timeout",
                    "20000",
                    "--exclude-path-regex",
                    "/events$",
                    "--experimental=openapi-3.1",
                    "--header",
                ])
                .arg(format!("Authorization: Bearer {admin}"))
                .current_dir(env!("CARGO_TARGET_TMPDIR"))
                .env("NO_COLOR", "1")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
}
