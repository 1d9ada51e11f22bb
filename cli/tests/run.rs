//! `fleetstream run` on the embedded log: a restarted run continues from its committed offsets
//! with its state, and Ctrl-C stops it cleanly; `fleetstream simulate --direct` writes the city
//! straight into the log.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};

use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetstream")
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

fn dump(data: &Path, topic: &str) -> Vec<Value> {
    let out = Command::new(bin())
        .args(["topics", "dump", topic, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run_until_caught_up(data: &Path, input: Option<&Path>) {
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--api-addr", "", "--exit-when-caught-up", "--config"])
        .arg(samples().join("depot.toml"))
        .arg("--data-dir")
        .arg(data);
    if let Some(input) = input {
        cmd.arg("--input").arg(input);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Last figures per (employee, period, start).
fn last_figures(records: &[Value]) -> BTreeMap<String, Value> {
    let mut last: BTreeMap<String, (u64, Value)> = BTreeMap::new();
    for r in records {
        let v = &r["value"];
        let key = format!("{}/{}/{}", v["employee_id"], v["period"], v["period_start"]);
        let version = v["version"].as_u64().unwrap();
        let mut figures = v.clone();
        let object = figures.as_object_mut().unwrap();
        for volatile in ["version", "final", "event_id"] {
            object.remove(volatile);
        }
        if last.get(&key).is_none_or(|(old, _)| *old < version) {
            last.insert(key, (version, figures));
        }
    }
    last.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

/// The overtime records of one deterministic replay of `input` (depot rules), written to `out`.
fn replay_overtime(input: &Path, out: &Path) -> Vec<Value> {
    let status = Command::new(bin())
        .args(["replay", "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(samples().join("depot.toml"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(out.join("overtime.records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Starts `fleetstream run` on `data` with `input` appended and returns it, with the rest of its
/// standard error, once it reports that it is caught up.
fn run_until_it_reports_caught_up(
    config: &Path,
    data: &Path,
    input: &Path,
) -> (Child, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new(bin())
        .args(["run", "--api-addr", "", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .arg("--input")
        .arg(input)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let caught_up = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("caught up"));
    if !caught_up {
        let _ = child.kill();
        let status = child.wait();
        panic!("the run ended without reporting that it caught up: {status:?}");
    }
    (child, lines)
}

fn split_input(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let text = std::fs::read_to_string(samples().join("depot.in.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let bad = r#"{"topic": "timesheet.punches", "key": "E009", "value": {"punch_id": "x", "employee_id": "E009", "kind": "teleport", "ts": "2026-10-19T04:00:00Z"}}"#;
    let part1 = dir.join("part1.jsonl");
    let part2 = dir.join("part2.jsonl");
    let all = dir.join("all.jsonl");
    std::fs::write(&part1, format!("{}\n{bad}\n", lines[..80].join("\n"))).unwrap();
    std::fs::write(&part2, format!("{}\n", lines[80..].join("\n"))).unwrap();
    std::fs::write(
        &all,
        format!("{}\n{bad}\n{}\n", lines[..80].join("\n"), lines[80..].join("\n")),
    )
    .unwrap();
    (part1, part2, all)
}

#[test]
fn a_second_run_continues_from_the_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (part1, part2, all) = split_input(dir.path());

    run_until_caught_up(&data, Some(&part1));
    let dlq = dump(&data, "timesheet.punches.dlq");
    assert_eq!(dlq.len(), 1, "the bad punch is dead-lettered once: {dlq:?}");
    assert_eq!(dlq[0]["value"]["error"]["field"], "kind");
    let first = dump(&data, "overtime.records").len();
    assert!(first > 0);

    run_until_caught_up(&data, Some(&part2));
    assert_eq!(
        dump(&data, "timesheet.punches.dlq").len(),
        1,
        "part 1 was not processed again"
    );
    let records = dump(&data, "overtime.records");
    assert!(records.len() > first);

    // The two runs together give the figures of one deterministic replay of everything.
    let replayed = replay_overtime(&all, &dir.path().join("replay"));
    assert_eq!(last_figures(&records), last_figures(&replayed));
}

#[test]
fn ctrl_c_stops_a_run_cleanly_and_the_next_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (part1, _, _) = split_input(dir.path());
    let (mut child, lines) = run_until_it_reports_caught_up(&samples().join("depot.toml"), &data, &part1);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped cleanly")), "{rest:?}");
    let before = dump(&data, "overtime.records").len();
    run_until_caught_up(&data, None);
    assert_eq!(
        dump(&data, "overtime.records").len(),
        before,
        "nothing processed twice after a clean stop"
    );
    assert_eq!(dump(&data, "timesheet.punches.dlq").len(), 1);
}

/// A run killed with SIGKILL loses what RocksDB held in memory since the last checkpoint (its
/// write-ahead log is written out at checkpoints): the next run replays that from the
/// changelog, so later punches are figured against every earlier one, as in one replay.
#[test]
fn a_killed_run_restores_what_its_state_lost_from_the_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = std::fs::read_to_string(samples().join("depot.in.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let part = |name: &str, range: std::ops::Range<usize>| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{}\n", lines[range].join("\n"))).unwrap();
        path
    };
    let (first, second, third) = (
        part("first.jsonl", 0..60),
        part("second.jsonl", 60..110),
        part("third.jsonl", 110..lines.len()),
    );
    // The first part ends with a clean stop: a checkpoint of everything so far.
    run_until_caught_up(&data, Some(&first));
    // The second part runs without a checkpoint after its start and is killed once caught up.
    let config = dir.path().join("no-checkpoints.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[processing]\ncheckpoint_interval = \"1h\"\n",
            std::fs::read_to_string(samples().join("depot.toml")).unwrap()
        ),
    )
    .unwrap();
    let (mut child, _stderr) = run_until_it_reports_caught_up(&config, &data, &second);
    let status = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!child.wait().unwrap().success(), "killed, not stopped");
    let after_kill = dump(&data, "overtime.records").len();
    // The third part's windows share weeks with the second's punches.
    run_until_caught_up(&data, Some(&third));
    let records = dump(&data, "overtime.records");
    assert!(records.len() > after_kill);
    assert_eq!(
        dump(&data, "timesheet.punches.dlq").len(),
        0,
        "no punch was taken for late or processed twice"
    );

    let all = dir.path().join("all.jsonl");
    std::fs::write(&all, format!("{}\n", lines.join("\n"))).unwrap();
    let replayed = replay_overtime(&all, &dir.path().join("replay"));
    assert_eq!(last_figures(&records), last_figures(&replayed));
}

/// `simulate --direct` drives the city straight into the embedded log (no server, no socket),
/// running the topology in process: every command it counted is a record on its topic, the
/// trips were matched and the metro drivers' shifts became overtime records.
#[test]
fn simulate_direct_writes_every_command_into_the_log_and_runs_the_city() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(bin())
        .args([
            "simulate",
            "--direct",
            "--drivers",
            "40",
            "--riders",
            "150",
            "--employees",
            "3",
            "--duration",
            "4m",
            "--speed",
            "20x",
            "--quiet",
            "--json",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    let n = |field: &str| {
        summary[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} in {summary}"))
    };
    assert_eq!(n("failed"), 0, "{summary}");
    assert!(n("pings") >= 40 * 50, "{summary}");
    assert!(n("trips_requested") > 20, "{summary}");
    assert!(n("matches") > 0, "{summary}");
    assert_eq!(n("punches"), 3 * 4, "{summary}");

    assert_eq!(dump(&data, "gps.pings").len() as u64, n("pings"));
    assert_eq!(dump(&data, "timesheet.punches").len() as u64, n("punches"));
    assert_eq!(dump(&data, "wallet.commands").len() as u64, n("top_ups"));
    let commands = dump(&data, "trip.commands");
    let requests = commands
        .iter()
        .filter(|r| r["value"]["type"] == "request")
        .count() as u64;
    assert_eq!(requests, n("trips_requested"));
    // What the topology made of them, in the same log.
    let events = dump(&data, "trip.events");
    let matched = events.iter().filter(|r| r["value"]["type"] == "matched").count() as u64;
    assert!(
        matched >= n("matches"),
        "{matched} matched events, summary {summary}"
    );
    let overtime = dump(&data, "overtime.records");
    let employees: std::collections::BTreeSet<&str> = overtime
        .iter()
        .filter_map(|r| r["value"]["employee_id"].as_str())
        .collect();
    assert_eq!(employees.len(), 3, "{employees:?}");
}
