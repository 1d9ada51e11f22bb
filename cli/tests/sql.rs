//! SQL over a replayed city and depot: golden files (`tests/sql/*.slt`), the key-lookup plan, the
//! UDF plugin built from `udfs/fare_rule` and loaded from a plugin directory, and the answers
//! checked against the samples' independently worked-out results.
//!
//! The golden files are a small sqllogictest dialect, one record per paragraph:
//!
//! ```text
//! # a comment
//! query [rowsort]
//! SELECT ...
//! ----
//! <the answer as CSV, header first>
//!
//! statement error <text the error must contain>
//! COPY ...
//! ```
//!
//! `FLEETSTREAM_TEST_REWRITE=1 cargo test --test sql` rewrites the answers after a deliberate change;
//! review the diff like code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use fleetstream::commands::replay::{ReplayArgs, replay};
use fleetstream::commands::sql::{LocalQueries, describe};
use fleetstream::config::AppConfig;
use fleetstream_queries::format::{Format, render};
use fleetstream_queries::{Limits, QueryOutput};
use rust_decimal::Decimal;
use serde_json::Value;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the example plugin (`udfs/fare_rule`, its own workspace and lockfile) and returns a
/// plugin directory holding it.
fn plugin_dir(root: &Path) -> PathBuf {
    let target = std::env::var_os("FLEETSTREAM_UDF_TARGET")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            home.join(".cache/fleetstream/udf-target")
        });
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(repo().join("udfs/fare_rule/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        // The plugin is a workspace of its own; none of this test's build settings apply to it.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .status()
        .expect("running cargo to build the example UDF plugin");
    assert!(status.success(), "building udfs/fare_rule failed");
    let dir = root.join("udfs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        target.join("release/libfare_rule.so"),
        dir.join("libfare_rule.so"),
    )
    .unwrap();
    dir
}

/// Replays a sample into a fresh data directory (Parquet result tables configured) and opens the
/// query engine over it.
struct Replayed {
    _root: tempfile::TempDir,
    local: Option<LocalQueries>,
}

impl Replayed {
    fn new(input: &str, config: Option<&str>) -> Replayed {
        let root = tempfile::tempdir().unwrap();
        let mut toml = match config {
            Some(config) => std::fs::read_to_string(samples().join(config)).unwrap(),
            None => String::new(),
        };
        let plugins = plugin_dir(root.path());
        toml.push_str(&format!(
            "\n[sinks.parquet]\n\n[sql]\nplugins_dir = {:?}\n",
            plugins.display().to_string()
        ));
        let config_path = root.path().join("fleetstream.toml");
        std::fs::write(&config_path, toml).unwrap();
        let data_dir = root.path().join("data");
        replay(&ReplayArgs {
            input: samples().join(input),
            out: root.path().join("out"),
            config: Some(config_path.clone()),
            partitions: None,
            data_dir: Some(data_dir.clone()),
            brokers: None,
        })
        .unwrap();
        let mut config = AppConfig::load(Some(&config_path)).unwrap();
        config.data_dir = data_dir;
        let local = LocalQueries::open(
            &config,
            Limits {
                max_rows: 1_000,
                ..Limits::default()
            },
        )
        .unwrap();
        Replayed {
            _root: root,
            local: Some(local),
        }
    }

    async fn query(&self, sql: &str) -> Result<QueryOutput, String> {
        self.local
            .as_ref()
            .unwrap()
            .queries
            .query(sql)
            .await
            .map_err(|e| describe(&e))
    }

    async fn csv(&self, sql: &str) -> String {
        let output = self.query(sql).await.unwrap_or_else(|e| panic!("{sql}\n-> {e}"));
        String::from_utf8(render(&output, Format::Csv).unwrap()).unwrap()
    }
}

impl Drop for Replayed {
    fn drop(&mut self) {
        if let Some(local) = self.local.take() {
            local.close().unwrap();
        }
    }
}

enum Expect {
    Rows { rowsort: bool, csv: Vec<String> },
    Error(String),
}

struct Record {
    sql: String,
    expect: Expect,
    line: usize,
    /// Lines of the file this record spans (for rewriting).
    span: std::ops::Range<usize>,
    header: String,
}

fn parse(text: &str) -> Vec<Record> {
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let header = line.to_string();
        i += 1;
        let mut sql = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim_end() != "----" {
            sql.push(lines[i]);
            i += 1;
        }
        let expect = if let Some(text) = header
            .strip_prefix("statement error ")
            .or_else(|| header.strip_prefix("query error "))
        {
            Expect::Error(text.trim().to_string())
        } else if let Some(options) = header.strip_prefix("query") {
            assert!(
                i < lines.len() && lines[i].trim_end() == "----",
                "line {}: a query needs ---- and its answer",
                start + 1
            );
            i += 1;
            let mut csv = Vec::new();
            while i < lines.len() && !lines[i].trim().is_empty() {
                csv.push(lines[i].trim_end().to_string());
                i += 1;
            }
            Expect::Rows {
                rowsort: options.trim() == "rowsort",
                csv,
            }
        } else {
            panic!("line {}: unknown record {header:?}", start + 1);
        };
        records.push(Record {
            sql: sql.join("\n"),
            expect,
            line: start + 1,
            span: start..i,
            header,
        });
    }
    records
}

fn answer(csv: &str, rowsort: bool) -> Vec<String> {
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    if rowsort && lines.len() > 1 {
        lines[1..].sort();
    }
    lines
}

async fn run_golden(replayed: &Replayed, file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let records = parse(&text);
    assert!(!records.is_empty(), "{file} has no records");
    let rewrite = std::env::var_os("FLEETSTREAM_TEST_REWRITE").is_some();
    let lines: Vec<&str> = text.lines().collect();
    let mut rewritten: Vec<String> = Vec::new();
    let mut copied = 0;
    let mut failures = Vec::new();
    for record in &records {
        rewritten.extend(lines[copied..record.span.start].iter().map(|l| l.to_string()));
        copied = record.span.end;
        match &record.expect {
            Expect::Rows { rowsort, csv } => {
                let actual = match replayed.query(&record.sql).await {
                    Ok(output) => answer(
                        &String::from_utf8(render(&output, Format::Csv).unwrap()).unwrap(),
                        *rowsort,
                    ),
                    Err(e) => vec![format!("ERROR: {e}")],
                };
                if &actual != csv {
                    failures.push(format!(
                        "{file}:{}\n{}\nexpected:\n{}\nactual:\n{}",
                        record.line,
                        record.sql,
                        csv.join("\n"),
                        actual.join("\n")
                    ));
                }
                rewritten.push(record.header.clone());
                rewritten.push(record.sql.clone());
                rewritten.push("----".to_string());
                rewritten.extend(actual);
            }
            Expect::Error(expected) => {
                match replayed.query(&record.sql).await {
                    Ok(_) => failures.push(format!(
                        "{file}:{}\n{}\nexpected an error containing {expected:?}, got rows",
                        record.line, record.sql
                    )),
                    Err(e) if !e.contains(expected.as_str()) => failures.push(format!(
                        "{file}:{}\n{}\nexpected an error containing {expected:?}, got: {e}",
                        record.line, record.sql
                    )),
                    Err(_) => {}
                }
                rewritten.extend(lines[record.span.clone()].iter().map(|l| l.to_string()));
            }
        }
    }
    rewritten.extend(lines[copied..].iter().map(|l| l.to_string()));
    if rewrite {
        std::fs::write(&path, rewritten.join("\n") + "\n").unwrap();
        return;
    }
    assert!(
        failures.is_empty(),
        "{} of {} records differ:\n\n{}",
        failures.len(),
        records.len(),
        failures.join("\n\n")
    );
}

fn expected(name: &str) -> BTreeMap<String, Value> {
    serde_json::from_str(&std::fs::read_to_string(samples().join(name)).unwrap()).unwrap()
}

fn decimal(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn city() {
    let city = Replayed::new("city.in.jsonl", None);
    run_golden(&city, "city.slt").await;

    // The same answers, worked out from the sample's expected results rather than by SQL.
    let trips = expected("city.expected.json");
    let completed: Vec<&Value> = trips.values().filter(|t| t["outcome"] == "completed").collect();
    let fares: Decimal = completed.iter().map(|t| decimal(&t["fare"])).sum();
    assert_eq!(
        city.csv("SELECT COUNT(*) AS n, SUM(fare) AS fares FROM trips WHERE status = 'completed'")
            .await,
        format!("n,fares\n{},{fares}\n", completed.len())
    );
    let mut balances: BTreeMap<String, Decimal> = BTreeMap::new();
    for trip in trips.values() {
        for (account, amount) in trip["postings"].as_object().into_iter().flatten() {
            *balances.entry(account.clone()).or_default() += decimal(amount);
        }
    }
    let mut want = String::from("account_id,balance\n");
    for (account, balance) in &balances {
        want.push_str(&format!("{account},{balance}\n"));
    }
    assert_eq!(
        city.csv("SELECT account_id, balance FROM wallets ORDER BY account_id")
            .await,
        want
    );
    let mut want = String::from("account_id,balance\n");
    for (account, balance) in &balances {
        want.push_str(&format!("{account},{balance}\n"));
    }
    assert_eq!(city.csv("SELECT account_id, SUM(amount) AS balance FROM ledger_entries GROUP BY account_id ORDER BY account_id").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depot() {
    let depot = Replayed::new("depot.in.jsonl", Some("depot.toml"));
    run_golden(&depot, "depot.slt").await;

    // The store's latest records are the sample's expected records, row for row.
    let records: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(samples().join("depot.expected.json")).unwrap())
            .unwrap();
    let columns = [
        "employee_id",
        "period",
        "period_start",
        "worked_minutes",
        "regular_minutes",
        "ot_150_minutes",
        "ot_200_minutes",
        "weekly_ot_minutes",
        "night_minutes",
        "holiday_minutes",
    ];
    let mut want: Vec<String> = records
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r[*c].as_str().map_or_else(|| r[*c].to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    want.sort();
    let got = depot
        .csv(&format!("SELECT {} FROM overtime", columns.join(", ")))
        .await;
    let mut got: Vec<String> = got.lines().skip(1).map(str::to_string).collect();
    got.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_lookup_is_pushed_into_the_store() {
    let city = Replayed::new("city.in.jsonl", None);
    let plan = city
        .csv("EXPLAIN SELECT driver_id, lat, lng FROM drivers WHERE driver_id = 'd003'")
        .await;
    assert!(
        plan.contains("StoreScanExec: table=drivers, lookup driver_id=[d003], rows=1"),
        "{plan}"
    );
    // No filter left above the scan: the store answers the lookup exactly.
    assert!(!plan.contains("FilterExec"), "{plan}");
    let plan = city
        .csv("EXPLAIN SELECT * FROM wallets WHERE account_id IN ('driver:d000', 'rider:r001')")
        .await;
    assert!(
        plan.contains("lookup account_id=[driver:d000, rider:r001], rows=2"),
        "{plan}"
    );
    // A filter on another column scans (and says so).
    let plan = city
        .csv("EXPLAIN SELECT * FROM drivers WHERE vehicle_class = 'xl'")
        .await;
    assert!(!plan.contains("lookup"), "{plan}");
    assert!(plan.contains("StoreScanExec: table=drivers"), "{plan}");
}
