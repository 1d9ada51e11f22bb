//! `fleetstream replay` reproduces the sample cities and depots, whatever the partition count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleetstream::commands::replay::{ReplayArgs, replay};
use serde_json::Value;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

fn run(
    input: &str,
    config: Option<&str>,
    partitions: u32,
) -> (tempfile::TempDir, BTreeMap<String, Vec<Value>>) {
    let out = tempfile::tempdir().unwrap();
    let args = ReplayArgs {
        input: samples().join(input),
        out: out.path().to_path_buf(),
        config: config.map(|c| samples().join(c)),
        partitions: Some(partitions),
        data_dir: None,
        brokers: None,
    };
    replay(&args).unwrap();
    let mut topics = BTreeMap::new();
    for entry in std::fs::read_dir(out.path()).unwrap() {
        let path = entry.unwrap().path();
        let topic = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".jsonl")
            .to_string();
        let lines = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect();
        topics.insert(topic, lines);
    }
    (out, topics)
}

fn read_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
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
fn the_city_sample_settles_every_trip_as_expected() {
    let (_dir, topics) = run("city.in.jsonl", None, 4);
    let expected: BTreeMap<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(samples().join("city.expected.json")).unwrap())
            .unwrap();
    let events: Vec<&Value> = topics["trip.events"].iter().map(|r| &r["value"]).collect();
    let postings: Vec<&Value> = topics["ledger.entries"].iter().map(|r| &r["value"]).collect();
    for (trip, want) in &expected {
        let mine: Vec<&&Value> = events.iter().filter(|e| e["trip_id"] == trip.as_str()).collect();
        if want["outcome"] == "no_driver" {
            assert!(mine.iter().any(|e| e["type"] == "no_driver"), "{trip}: {mine:?}");
            assert!(postings.iter().all(|p| p["txn_id"] != trip.as_str()));
            continue;
        }
        let completed: Vec<&&&Value> = mine.iter().filter(|e| e["type"] == "completed").collect();
        assert_eq!(completed.len(), 1, "{trip}: exactly one completion");
        let c = completed[0];
        assert_eq!(c["driver_id"], want["driver_id"], "{trip}");
        assert_eq!(c["fare"], want["fare"], "{trip}");
        assert_eq!(c["surge"], want["surge"], "{trip}");
        let distance = c["distance_km"].as_f64().unwrap();
        assert!(
            (distance - want["distance_km"].as_f64().unwrap()).abs() < 1e-4,
            "{trip}: {distance}"
        );
        let mut accounts = BTreeMap::new();
        for p in postings.iter().filter(|p| p["txn_id"] == trip.as_str()) {
            assert!(
                accounts
                    .insert(p["account_id"].as_str().unwrap().to_string(), p["amount"].clone())
                    .is_none(),
                "{trip}: one posting per account"
            );
        }
        let want_postings: BTreeMap<String, Value> = want["postings"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(accounts, want_postings, "{trip}");
    }
}

#[test]
fn the_depot_sample_gives_the_expected_figures() {
    let (_dir, topics) = run("depot.in.jsonl", Some("depot.toml"), 3);
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(samples().join("depot.expected.json")).unwrap())
            .unwrap();
    let mut last: BTreeMap<(String, String, String), Value> = BTreeMap::new();
    let mut versions: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for r in &topics["overtime.records"] {
        let v = &r["value"];
        let key = (
            v["employee_id"].to_string(),
            v["period"].to_string(),
            v["period_start"].to_string(),
        );
        let version = v["version"].as_u64().unwrap();
        assert!(
            versions.get(&key).is_none_or(|&old| version == old + 1),
            "versions increase by one: {key:?}"
        );
        versions.insert(key.clone(), version);
        last.insert(key, v.clone());
    }
    assert_eq!(last.len(), expected.len(), "one window per expected record");
    for want in &expected {
        let key = (
            want["employee_id"].to_string(),
            want["period"].to_string(),
            want["period_start"].to_string(),
        );
        let got = last.get(&key).unwrap_or_else(|| panic!("no record for {key:?}"));
        for field in [
            "worked_minutes",
            "regular_minutes",
            "ot_150_minutes",
            "ot_200_minutes",
            "weekly_ot_minutes",
            "night_minutes",
            "holiday_minutes",
            "flags",
        ] {
            assert_eq!(got[field], want[field], "{key:?} {field}");
        }
    }
}

#[test]
fn replays_are_byte_identical_across_runs_and_partition_counts() {
    let (a, _) = run("city.in.jsonl", None, 1);
    let (b, _) = run("city.in.jsonl", None, 8);
    let (c, _) = run("city.in.jsonl", None, 8);
    assert_eq!(read_bytes(a.path()), read_bytes(b.path()));
    assert_eq!(read_bytes(b.path()), read_bytes(c.path()));
    let (d, _) = run("depot.in.jsonl", Some("depot.toml"), 1);
    let (e, _) = run("depot.in.jsonl", Some("depot.toml"), 5);
    assert_eq!(read_bytes(d.path()), read_bytes(e.path()));
}
