//! `fleetstream` on a real Kafka-protocol broker (`FLEETSTREAM_TEST_KAFKA`, started by
//! `scripts/servers.sh`): a replay through Kafka gives the embedded replay's output, and two
//! instances in one group split the work, one is SIGKILLed, the other takes over its tasks,
//! restores their state and finishes with the results of a single run — no ledger entry lost
//! or counted twice. Also: with two instances, SQL and interactive queries on either see every
//! partition (the other's fetched from it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetstream")
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

fn broker() -> String {
    std::env::var("FLEETSTREAM_TEST_KAFKA").expect(
        "FLEETSTREAM_TEST_KAFKA is not set: start the test servers with `scripts/servers.sh start` \
         and source the env file it writes (scripts/test.sh does both)",
    )
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}{:x}", nanos & 0xffff_ffff_ffff)
}

fn replay(args: &[&str], input: &Path, out: &Path) {
    let output = Command::new(bin())
        .arg("replay")
        .args(args)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "replay {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_replay_through_kafka_equals_the_embedded_replay() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("r");
    let config = dir.path().join("kafka.toml");
    std::fs::write(
        &config,
        format!(
            "topic_prefix = \"{prefix}.\"\n{}",
            std::fs::read_to_string(samples().join("depot.toml")).unwrap()
        ),
    )
    .unwrap();
    for input in ["city.in.jsonl", "depot.in.jsonl"] {
        let (embedded, kafka) = (
            dir.path().join(format!("e-{input}")),
            dir.path().join(format!("k-{input}")),
        );
        let config = config.to_string_lossy().into_owned();
        replay(
            &["--config", &config, "--partitions", "3"],
            &samples().join(input),
            &embedded,
        );
        replay(
            &["--config", &config, "--partitions", "3", "--brokers", &broker()],
            &samples().join(input),
            &kafka,
        );
        let (a, b) = (files(&embedded), files(&kafka));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (name, bytes) in &a {
            assert!(
                bytes == &b[name],
                "{input}: {name} differs between the embedded log and Kafka"
            );
        }
        assert!(a.values().any(|v| !v.is_empty()));
    }
}

/// A running `fleetstream run` whose stderr lines arrive on a channel.
struct Instance {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Instance {
    fn start(config: &Path, data: &Path) -> Instance {
        Instance::with_api(config, data, "")
    }

    /// With the edge API on `addr` (empty: none).
    fn with_api(config: &Path, data: &Path, addr: &str) -> Instance {
        let mut child = Command::new(bin())
            .args(["run", "--api-addr", addr, "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", "warn,fleetstream=info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Instance {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`, returning it.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no {needle:?} within {timeout:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // A failing test must not leave the process running.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // What the instance logged, kept when asked for (to study a run that passed too).
        if let Some(dir) = std::env::var_os("FLEETSTREAM_TEST_KEEP_LOGS") {
            self.drain();
            let path = Path::new(&dir).join(format!("instance-{}.log", self.child.id()));
            let _ = std::fs::write(path, self.seen.join("\n"));
        }
    }
}

fn assigned(line: &str) -> usize {
    line.split("partitions=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn dump(config: &Path, topic: &str) -> Vec<Value> {
    dump_in(config, None, topic)
}

/// Dumps with `--data-dir`: on Kafka the command leaves the state there alone, so it works
/// beside the instance that holds it.
fn dump_in(config: &Path, data: Option<&Path>, topic: &str) -> Vec<Value> {
    let mut command = Command::new(bin());
    command.args(["topics", "dump", topic, "--config"]).arg(config);
    if let Some(data) = data {
        command.arg("--data-dir").arg(data);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Entry id -> amount, and how many records carried each id.
fn ledger(records: &[Value]) -> (BTreeMap<String, Decimal>, usize) {
    let mut out = BTreeMap::new();
    let mut copies = 0;
    for r in records {
        let v = &r["value"];
        let amount: Decimal = v["amount"].as_str().unwrap().parse().unwrap();
        if out
            .insert(v["entry_id"].as_str().unwrap().to_string(), amount)
            .is_some()
        {
            copies += 1;
        }
    }
    (out, copies)
}

fn last_figures(records: &[Value]) -> BTreeMap<String, Value> {
    let mut last: BTreeMap<String, (u64, Value)> = BTreeMap::new();
    for r in records {
        let v = &r["value"];
        let key = format!("{}/{}/{}", v["employee_id"], v["period"], v["period_start"]);
        let version = v["version"].as_u64().unwrap();
        let mut figures = v.clone();
        for volatile in ["version", "final", "event_id"] {
            figures.as_object_mut().unwrap().remove(volatile);
        }
        if last.get(&key).is_none_or(|(old, _)| *old < version) {
            last.insert(key, (version, figures));
        }
    }
    last.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

#[test]
fn two_instances_split_the_work_and_one_takes_over_when_the_other_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let app = unique("g");
    let config = dir.path().join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "app_id = \"{app}\"\ntopic_prefix = \"{app}.\"\npartitions = 4\n\n[kafka]\nbrokers = \"{}\"\n\n[kafka.properties]\n\
             \"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\n[processing]\ncommit_interval = \"100ms\"\n\n{}",
            broker(),
            std::fs::read_to_string(samples().join("depot.toml")).unwrap()
        ),
    )
    .unwrap();
    // Input: the depot sample and thousands of wallet top-ups; both give the same results
    // however the work is spread and interleaved.
    let mut input = std::fs::read_to_string(samples().join("depot.in.jsonl")).unwrap();
    for i in 0..6000 {
        let account = format!("rider:r{}", i % 300);
        let value = serde_json::json!({"type": "top_up", "command_id": format!("c{i}"), "account_id": account,
            "amount": format!("{}.{:02}", 1 + i % 50, i % 100), "ts": "2026-11-02T07:00:00Z"});
        input.push_str(
            &serde_json::json!({"topic": "wallet.commands", "key": account, "value": value}).to_string(),
        );
        input.push('\n');
    }
    let input_file = dir.path().join("input.jsonl");
    std::fs::write(&input_file, &input).unwrap();

    // What one deterministic run gives.
    let reference = dir.path().join("reference");
    replay(
        &["--config", &config.to_string_lossy(), "--partitions", "4"],
        &input_file,
        &reference,
    );
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(reference.join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (want_ledger, _) = ledger(&read("ledger.entries.jsonl"));
    let want_overtime = last_figures(&read("overtime.records.jsonl"));
    assert_eq!(want_ledger.len(), 12_000);

    let mut a = Instance::start(&config, &dir.path().join("a"));
    let first = a.wait_for("partitions assigned", Duration::from_secs(60));
    assert!(assigned(&first) > 0);
    produce(&config, &input_file);
    let mut b = Instance::start(&config, &dir.path().join("b"));
    let line = b.wait_for("partitions assigned", Duration::from_secs(60));
    let b_share = assigned(&line);
    let a_share = assigned(&a.wait_for("partitions assigned", Duration::from_secs(60)));
    assert!(
        b_share > 0 && a_share > 0,
        "both members got partitions: a {a_share}, b {b_share}"
    );
    // Let B work a little, then kill it without any chance to commit.
    std::thread::sleep(Duration::from_secs(2));
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    // A is given everything after B's session times out, restores B's tasks, and finishes.
    // (A may log more rounds of the earlier rebalance first.)
    let total = a_share + b_share;
    let deadline = Instant::now() + Duration::from_secs(90);
    while assigned(&a.wait_for("partitions assigned", Duration::from_secs(90))) != total {
        assert!(
            Instant::now() < deadline,
            "the survivor did not take over every partition"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        // Read beside the survivor, in its own data directory (its RocksDB is locked).
        let (entries, _) = ledger(&dump_in(&config, Some(&dir.path().join("a")), "ledger.entries"));
        if entries.len() >= want_ledger.len() {
            break;
        }
        if Instant::now() >= deadline {
            a.drain();
            panic!(
                "the survivor did not finish: {} of {} entries; it logged:\n{}",
                entries.len(),
                want_ledger.len(),
                a.seen.join("\n")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    a.wait_for("caught up", Duration::from_secs(120));
    Command::new("kill")
        .args(["-INT", &a.child.id().to_string()])
        .status()
        .unwrap();
    assert!(a.child.wait().unwrap().success());
    a.drain();

    let (got_ledger, copies) = ledger(&dump(&config, "ledger.entries"));
    assert_eq!(
        got_ledger, want_ledger,
        "every entry exactly once by id, with its amount"
    );
    let transactions = a
        .seen
        .iter()
        .any(|l| l.contains("exactly-once with transactions"));
    if transactions {
        assert_eq!(copies, 0, "with transactions no record is written twice");
    } else {
        eprintln!(
            "effectively-once: {copies} ledger records were written again after the kill, with the same ids"
        );
    }
    assert_eq!(last_figures(&dump(&config, "overtime.records")), want_overtime);
    let dlq: BTreeSet<String> = dump(&config, "timesheet.punches.dlq")
        .iter()
        .map(|r| r["value"].to_string())
        .collect();
    assert!(dlq.is_empty(), "{dlq:?}");
}

/// Appends a JSON-lines file to the cluster's topics.
fn produce(config: &Path, input: &Path) {
    let produced = Command::new(bin())
        .args(["topics", "produce", "--config"])
        .arg(config)
        .arg("--input")
        .arg(input)
        .output()
        .unwrap();
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_instances_any_instance_answers_over_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let app = unique("q");
    // One key pair for the cluster: instances sign their calls to each other with it.
    let (private, public) = fleetstream_api::auth::generate_pem().unwrap();
    std::fs::write(dir.path().join("jwt-private.pem"), &private).unwrap();
    std::fs::write(dir.path().join("jwt-public.pem"), &public).unwrap();
    let config = dir.path().join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "app_id = \"{app}\"\ntopic_prefix = \"{app}.\"\npartitions = 4\n\n[kafka]\nbrokers = \"{}\"\n\n[kafka.properties]\n\
             \"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\n[processing]\ncommit_interval = \"100ms\"\n\n\
             [auth]\npublic_key_file = {:?}\nprivate_key_file = {:?}\n",
            broker(),
            dir.path().join("jwt-public.pem").display().to_string(),
            dir.path().join("jwt-private.pem").display().to_string(),
        ),
    )
    .unwrap();
    let mut input = String::new();
    let mut want: BTreeMap<String, Decimal> = BTreeMap::new();
    for i in 0..2000 {
        let account = format!("rider:r{}", i % 200);
        let amount = format!("{}.{:02}", 1 + i % 50, i % 100);
        *want.entry(account.clone()).or_default() += amount.parse::<Decimal>().unwrap();
        let value = serde_json::json!({"type": "top_up", "command_id": format!("c{i}"), "account_id": account, "amount": amount, "ts": "2026-11-02T07:00:00Z"});
        input.push_str(
            &serde_json::json!({"topic": "wallet.commands", "key": account, "value": value}).to_string(),
        );
        input.push('\n');
    }
    let input_file = dir.path().join("input.jsonl");
    std::fs::write(&input_file, &input).unwrap();

    let (port_a, port_b) = (free_port(), free_port());
    let mut a = Instance::with_api(&config, &dir.path().join("a"), &format!("127.0.0.1:{port_a}"));
    a.wait_for("partitions assigned", Duration::from_secs(60));
    produce(&config, &input_file);
    let mut b = Instance::with_api(&config, &dir.path().join("b"), &format!("127.0.0.1:{port_b}"));
    let b_share = assigned(&b.wait_for("partitions assigned", Duration::from_secs(60)));
    let a_share = assigned(&a.wait_for("partitions assigned", Duration::from_secs(60)));
    assert!(
        a_share > 0 && b_share > 0,
        "both members got partitions: a {a_share}, b {b_share}"
    );

    let keys = fleetstream_api::Keys::from_pem(public.as_bytes(), Some(private.as_bytes())).unwrap();
    let analyst = keys
        .mint("ann", fleetstream_api::Role::Analyst, Duration::from_secs(600))
        .unwrap();
    let app_token = keys
        .mint("app", fleetstream_api::Role::App, Duration::from_secs(600))
        .unwrap();
    let client = reqwest::Client::new();
    let total: Decimal = want.values().copied().sum();
    let expected = format!("n,total\n{},{total}\n", want.len());
    for port in [port_a, port_b] {
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let answer = client
                .post(format!("{url}/v1/sql"))
                .bearer_auth(&analyst)
                .json(&serde_json::json!({"sql": "SELECT COUNT(*) AS n, SUM(balance) AS total FROM wallets WHERE account_id LIKE 'rider:%'", "format": "csv"}))
                .send()
                .await
                .unwrap();
            let status = answer.status();
            let last = format!("{status}: {}", answer.text().await.unwrap());
            if last == format!("200 OK: {expected}") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "instance on {port} never saw every partition; last answer {last}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Every key answers on every instance, wherever its partition is.
        for account in [
            "rider:r0", "rider:r1", "rider:r2", "rider:r3", "rider:r5", "rider:r8",
        ] {
            let wallet: Value = client
                .get(format!("{url}/v1/wallets/{account}"))
                .bearer_auth(&app_token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                wallet["balance"].as_str().unwrap().parse::<Decimal>().unwrap(),
                want[account],
                "{account} on {port}: {wallet}"
            );
        }
    }
    // Neither instance holds every partition itself: the answers above crossed instances.
    a.drain();
    b.drain();
    for instance in [&mut a, &mut b] {
        let _ = instance.child.kill();
        let _ = instance.child.wait();
    }
}
