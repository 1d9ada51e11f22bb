//! Generated cities and depots at scale through `fleetstream replay`: identical output for 1
//! and 8 partitions, balanced ledgers, results equal to the references, exports that open in
//! a spreadsheet.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use fleetstream::commands::replay::{ReplayArgs, replay};
use fleetstream_operators::config::JobConfig;
use fleetstream_operators::generate::Generated;
use fleetstream_operators::generate::city::{CityParams, generate_city, to_input};
use fleetstream_operators::generate::depot::{DepotParams, generate_depot};
use fleetstream_operators::reference;
use fleetstream_operators::reference::ride::RideReference;
use fleetstream_schemas::{LedgerEntry, OvertimeRecord, Period, Punch, TripEvent};
use fleetstream_sinks::export::latest_records;
use fleetstream_sinks::export::{COLUMNS, ExportFormat, write_overtime};
use rust_decimal::Decimal;

fn write_input(dir: &Path, records: &[Generated]) -> std::path::PathBuf {
    let path = dir.join("in.jsonl");
    let text: String = records.iter().map(|r| r.to_line() + "\n").collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn replay_to(input: &Path, out: &Path, config: Option<&Path>, partitions: u32, data_dir: Option<&Path>) {
    let args = ReplayArgs {
        input: input.to_path_buf(),
        out: out.to_path_buf(),
        config: config.map(Path::to_path_buf),
        partitions: Some(partitions),
        data_dir: data_dir.map(Path::to_path_buf),
        brokers: None,
    };
    replay(&args).unwrap();
}

fn values<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::from_value(v["value"].clone()).unwrap()
        })
        .collect()
}

#[test]
fn a_generated_city_replays_identically_for_1_and_8_partitions_and_balances() {
    let config = JobConfig::default();
    let records = generate_city(&CityParams::new(42, 500, 2000), &config);
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), &records);
    let (one, eight) = (dir.path().join("p1"), dir.path().join("p8"));
    replay_to(&input, &one, None, 1, None);
    replay_to(&input, &eight, None, 8, None);
    for topic in ["trip.events", "ledger.entries", "driver.positions"] {
        let a = std::fs::read(one.join(format!("{topic}.jsonl"))).unwrap();
        let b = std::fs::read(eight.join(format!("{topic}.jsonl"))).unwrap();
        assert!(a == b, "{topic} differs between 1 and 8 partitions");
    }

    let events: Vec<TripEvent> = values(&one.join("trip.events.jsonl"));
    let postings: Vec<LedgerEntry> = values(&one.join("ledger.entries.jsonl"));
    let requested = events.iter().filter(|e| e.kind.name() == "requested").count();
    let completed: Vec<&TripEvent> = events.iter().filter(|e| e.kind.name() == "completed").collect();
    assert_eq!(requested, 2000);
    assert!(
        completed.len() > 1500,
        "a busy city: {} completed",
        completed.len()
    );
    // Every transaction balances, so the whole ledger does; each trip settles once.
    let mut per_txn: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut entries: HashMap<&str, usize> = HashMap::new();
    for p in &postings {
        *per_txn.entry(&p.txn_id).or_default() += p.amount;
        *entries.entry(&p.entry_id).or_default() += 1;
    }
    assert!(
        per_txn.values().all(|sum| sum.is_zero()),
        "unbalanced transactions"
    );
    assert!(entries.values().all(|&n| n == 1), "an entry posted twice");
    assert_eq!(postings.iter().map(|p| p.amount).sum::<Decimal>(), Decimal::ZERO);
    for c in &completed {
        assert_eq!(
            per_txn.get(c.trip_id.as_str()).map(|_| ()),
            Some(()),
            "{} settled",
            c.trip_id
        );
    }

    // And it is what the single-threaded reference gives.
    let mut reference = RideReference::new(config);
    for r in &records {
        reference.apply(&to_input(r));
    }
    assert_eq!(events, reference.events);
    let mut mine = postings.clone();
    let mut theirs = reference.postings.clone();
    mine.sort_by(|a, b| a.entry_id.cmp(&b.entry_id));
    theirs.sort_by(|a, b| a.entry_id.cmp(&b.entry_id));
    assert_eq!(mine, theirs);
}

#[test]
fn a_generated_depot_of_200_employees_over_3_months_matches_the_reference_and_exports() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
    let config_file = samples.join("depot.toml");
    let config = fleetstream::config::AppConfig::load(Some(&config_file)).unwrap();
    let first = "2026-08-03".parse().unwrap();
    // Malformed sequences are flagged only when their window closes, and the reference's view
    // is that of closed windows: this depot has none, so open and closed windows agree.
    let mut params = DepotParams::new(9, 200, first, 91);
    params.forgotten_clock_outs = 0.0;
    let records = generate_depot(&params, &config.overtime);
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), &records);
    let out = dir.path().join("out");
    let data = dir.path().join("data");
    replay_to(&input, &out, Some(&config_file), 4, Some(&data));

    let punches: Vec<Punch> = records
        .iter()
        .map(|r| serde_json::from_value(r.value.clone()).unwrap())
        .collect();
    let want = reference::overtime::compute(&punches, &config.overtime);
    let produced: Vec<OvertimeRecord> = values(&out.join("overtime.records.jsonl"));
    let mut last: BTreeMap<(String, Period, chrono::NaiveDate), OvertimeRecord> = BTreeMap::new();
    for r in produced {
        let key = (r.employee_id.clone(), r.period, r.period_start);
        if last.get(&key).is_none_or(|old| old.version < r.version) {
            last.insert(key, r);
        }
    }
    assert_eq!(last.len(), want.len(), "one window per reference window");
    for (key, w) in &want {
        let r = &last[key];
        let flags: Vec<String> = r.flags.iter().map(|f| f.as_str().to_string()).collect();
        let got = (
            r.worked_minutes,
            r.regular_minutes,
            r.ot_150_minutes,
            r.ot_200_minutes,
            r.weekly_ot_minutes,
            r.night_minutes,
            r.holiday_minutes,
            flags,
        );
        let expected = (
            w.worked,
            w.regular,
            w.ot_150,
            w.ot_200,
            w.weekly_ot,
            w.night,
            w.holiday,
            w.flags.clone(),
        );
        assert_eq!(got, expected, "{key:?}");
    }

    // The export of the same run: a CSV header, then one row per window and period.
    let backend = fleetstream::backend::embedded(&config, &data).unwrap();
    let rows = latest_records(
        &*backend.log,
        "overtime.records",
        first,
        "2026-12-31".parse().unwrap(),
    )
    .unwrap();
    assert_eq!(rows.len(), want.len());
    let mut csv = Vec::new();
    write_overtime(&rows, ExportFormat::Csv, &mut csv).unwrap();
    let text = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], COLUMNS.join(","));
    assert_eq!(lines.len(), want.len() + 1);
    for line in &lines[1..] {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), COLUMNS.len(), "{line}");
        for hours in &cells[3..10] {
            let (_, decimals) = hours.split_once('.').expect("hours with decimals");
            assert_eq!(decimals.len(), 2, "{line}");
        }
    }
}
