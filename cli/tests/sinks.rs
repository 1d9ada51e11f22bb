//! The sinks against real servers (`scripts/servers.sh` starts them; `FLEETSTREAM_TEST_*`
//! name them): every output record lands once in PostgreSQL, ClickHouse and the Parquet
//! tables, compared with what the output topics hold; a run killed mid-write adds no
//! duplicate and loses no row; databases stopped for 30 s are caught up afterwards.
//!
//! The tests stop and start the servers, so they take turns (one lock).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;

static SERVERS: Mutex<()> = Mutex::new(());

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetstream")
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

fn server(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: start the test servers with `scripts/servers.sh start` and source the env file it writes (scripts/test.sh does both)")
    })
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}_{:x}", nanos & 0xffff_ffff_ffff)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh PostgreSQL database and ClickHouse database for one test.
struct Databases {
    pg_url: String,
    ch_url: String,
    ch_db: String,
}

impl Databases {
    fn create(name: &str) -> Databases {
        let admin = server("FLEETSTREAM_TEST_POSTGRES");
        let db = unique(name);
        runtime().block_on(async {
            let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .await
                .unwrap();
        });
        let base = admin.rsplit_once('/').unwrap().0;
        Databases {
            pg_url: format!("{base}/{db}"),
            ch_url: server("FLEETSTREAM_TEST_CLICKHOUSE"),
            ch_db: db,
        }
    }

    fn config(&self, data: &Path, extra: &str) -> String {
        self.config_with_batches(data, extra, 200)
    }

    fn config_with_batches(&self, data: &Path, extra: &str, batch_records: usize) -> String {
        format!(
            "{extra}\n[sinks]\nbatch_records = {batch_records}\nbatch_interval = \"200ms\"\nmax_backoff = \"1s\"\n\n\
             [sinks.postgres]\nurl = \"{}\"\n\n[sinks.clickhouse]\nurl = \"{}\"\ndatabase = \"{}\"\n\n\
             [sinks.parquet]\ndir = \"{}\"\nflush_interval = \"1s\"\n",
            self.pg_url,
            self.ch_url,
            self.ch_db,
            data.join("tables").display()
        )
    }

    fn pg(&self, sql: &str) -> Vec<Vec<String>> {
        let url = self.pg_url.clone();
        let sql = sql.to_string();
        runtime().block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let rows = client.simple_query(&sql).await.unwrap();
            rows.into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).unwrap_or("").to_string()).collect())
                    }
                    _ => None,
                })
                .collect()
        })
    }

    /// Rows of a ClickHouse query, `{db}` standing for the test's database.
    fn ch(&self, sql: &str) -> Vec<Vec<String>> {
        let sql = sql.replace("{db}", &self.ch_db);
        let client = clickhouse::Client::default().with_url(&self.ch_url);
        let bytes = runtime().block_on(async move {
            client
                .query(&sql)
                .fetch_bytes("TSV")
                .unwrap()
                .collect()
                .await
                .unwrap()
        });
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }
}

fn dump(config: &Path, data: &Path, topic: &str) -> Vec<Value> {
    let out = Command::new(bin())
        .args(["topics", "dump", topic, "--config"])
        .arg(config)
        .arg("--data-dir")
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

fn run(config: &Path, data: &Path, input: Option<&Path>) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--api-addr", "", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn,fleetstream=info");
    if let Some(input) = input {
        cmd.arg("--input").arg(input);
    }
    cmd
}

fn run_until_caught_up(config: &Path, data: &Path, input: Option<&Path>) -> String {
    let out = run(config, data, input)
        .arg("--exit-when-caught-up")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn decimal(s: &str) -> Decimal {
    s.parse().unwrap_or_else(|_| panic!("{s:?} is not a decimal"))
}

/// What the output topics hold, reduced to what every sink must show.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    trip_events: usize,
    trips: usize,
    ledger_entries: usize,
    ledger_sum: Decimal,
    balances: BTreeMap<String, Decimal>,
    /// (employee, period, start) -> (version, worked minutes, ot 150 minutes).
    overtime: BTreeMap<(String, String, String), (u64, i64, i64)>,
    positions: usize,
    drivers: usize,
}

impl Expected {
    fn from_topics(config: &Path, data: &Path) -> Expected {
        let ids = |records: &[Value], field: &str| -> BTreeSet<String> {
            records
                .iter()
                .map(|r| r["value"][field].as_str().unwrap().to_string())
                .collect()
        };
        let events = dump(config, data, "trip.events");
        let ledger = dump(config, data, "ledger.entries");
        let mut entries: BTreeMap<String, (String, Decimal)> = BTreeMap::new();
        for r in &ledger {
            let v = &r["value"];
            entries.insert(
                v["entry_id"].as_str().unwrap().into(),
                (
                    v["account_id"].as_str().unwrap().into(),
                    decimal(v["amount"].as_str().unwrap()),
                ),
            );
        }
        let mut balances = BTreeMap::new();
        for (account, amount) in entries.values() {
            *balances.entry(account.clone()).or_insert(Decimal::ZERO) += amount;
        }
        let mut overtime = BTreeMap::new();
        for r in dump(config, data, "overtime.records") {
            let v = &r["value"];
            let key = (
                v["employee_id"].as_str().unwrap().to_string(),
                v["period"].as_str().unwrap().to_string(),
                v["period_start"].as_str().unwrap().to_string(),
            );
            let figures = (
                v["version"].as_u64().unwrap(),
                v["worked_minutes"].as_i64().unwrap(),
                v["ot_150_minutes"].as_i64().unwrap(),
            );
            if overtime
                .get(&key)
                .is_none_or(|old: &(u64, i64, i64)| old.0 < figures.0)
            {
                overtime.insert(key, figures);
            }
        }
        let positions = dump(config, data, "driver.positions");
        Expected {
            trip_events: ids(&events, "event_id").len(),
            trips: ids(&events, "trip_id").len(),
            ledger_entries: entries.len(),
            ledger_sum: entries.values().map(|(_, a)| *a).sum(),
            balances,
            overtime,
            positions: ids(&positions, "event_id").len(),
            drivers: ids(&positions, "driver_id").len(),
        }
    }

    fn from_postgres(db: &Databases) -> Expected {
        let one = |sql: &str| db.pg(sql)[0][0].clone();
        let count = |table: &str| {
            one(&format!("SELECT count(*) FROM {table}"))
                .parse::<usize>()
                .unwrap()
        };
        Expected {
            trip_events: count("trip_events"),
            trips: count("trips"),
            ledger_entries: count("ledger_entries"),
            ledger_sum: decimal(&one("SELECT COALESCE(sum(amount), 0)::text FROM ledger_entries")),
            balances: db.pg("SELECT account_id, balance::text FROM wallet_balances").into_iter().map(|r| (r[0].clone(), decimal(&r[1]))).collect(),
            overtime: db
                .pg("SELECT employee_id, period, period_start::text, version, worked_minutes, ot_150_minutes FROM overtime_records")
                .into_iter()
                .map(|r| ((r[0].clone(), r[1].clone(), r[2].clone()), (r[3].parse().unwrap(), r[4].parse().unwrap(), r[5].parse().unwrap())))
                .collect(),
            // PostgreSQL keeps the latest position per driver, not every ping.
            positions: 0,
            drivers: count("driver_locations"),
        }
    }

    fn from_clickhouse(db: &Databases) -> Expected {
        let one = |sql: &str| db.ch(sql)[0][0].clone();
        let count = |table: &str| {
            one(&format!("SELECT count() FROM {{db}}.{table} FINAL"))
                .parse::<usize>()
                .unwrap()
        };
        let ledger_sum = one("SELECT toString(sum(amount)) FROM {db}.ledger_entries FINAL");
        Expected {
            trip_events: count("trip_events"),
            trips: one("SELECT uniqExact(trip_id) FROM {db}.trip_events FINAL").parse().unwrap(),
            ledger_entries: count("ledger_entries"),
            ledger_sum: decimal(&ledger_sum),
            balances: db
                .ch("SELECT account_id, toString(sum(amount)) FROM {db}.ledger_entries FINAL GROUP BY account_id")
                .into_iter()
                .map(|r| (r[0].clone(), decimal(&r[1])))
                .collect(),
            overtime: db
                .ch("SELECT employee_id, period, toString(period_start), version, worked_minutes, ot_150_minutes FROM {db}.overtime_records FINAL")
                .into_iter()
                .map(|r| ((r[0].clone(), r[1].clone(), r[2].clone()), (r[3].parse().unwrap(), r[4].parse().unwrap(), r[5].parse().unwrap())))
                .collect(),
            positions: count("driver_positions"),
            drivers: one("SELECT uniqExact(driver_id) FROM {db}.driver_positions FINAL").parse().unwrap(),
        }
    }
}

/// Rows per table in the Parquet files.
fn parquet_rows(dir: &Path) -> BTreeMap<String, usize> {
    let mut rows = BTreeMap::new();
    for table in [
        "trip_events",
        "ledger_entries",
        "overtime_records",
        "driver_positions",
    ] {
        let mut count = 0;
        let mut stack = vec![dir.join(table)];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.map(Result::unwrap) {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "parquet") {
                    let file = std::fs::File::open(&path).unwrap();
                    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
                    count += parquet::file::reader::FileReader::metadata(&reader)
                        .file_metadata()
                        .num_rows() as usize;
                }
            }
        }
        rows.insert(table.to_string(), count);
    }
    rows
}

fn check_everything_landed_once(config: &Path, data: &Path, db: &Databases) {
    let want = Expected::from_topics(config, data);
    assert!(
        want.trip_events + want.ledger_entries + want.overtime.len() > 0,
        "the input produced results"
    );
    assert_eq!(
        Expected::from_postgres(db),
        Expected {
            positions: 0,
            ..want.clone()
        },
        "PostgreSQL holds every result once"
    );
    assert_eq!(
        Expected::from_clickhouse(db),
        want,
        "ClickHouse holds every result once"
    );
    let ledger_total = decimal(&db.pg("SELECT COALESCE(sum(balance), 0)::text FROM wallet_balances")[0][0]);
    assert_eq!(ledger_total, Decimal::ZERO, "double entry: balances sum to zero");
    let files = parquet_rows(&data.join("tables"));
    let records = |topic: &str| dump(config, data, topic).len();
    assert_eq!(files["trip_events"], records("trip.events"));
    assert_eq!(files["ledger_entries"], records("ledger.entries"));
    assert_eq!(files["overtime_records"], records("overtime.records"));
    assert_eq!(files["driver_positions"], records("driver.positions"));
}

#[test]
fn every_result_of_the_city_and_depot_samples_lands_once_in_each_database() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    for (name, base) in [
        ("city", String::new()),
        (
            "depot",
            std::fs::read_to_string(samples().join("depot.toml")).unwrap(),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = Databases::create(name);
        let config = dir.path().join("config.toml");
        std::fs::write(&config, db.config(&dir.path().join("data"), &base)).unwrap();
        let data = dir.path().join("data");
        let out = Command::new(bin())
            .args(["replay", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .arg("--input")
            .arg(samples().join(format!("{name}.in.jsonl")))
            .arg("--out")
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        check_everything_landed_once(&config, &data, &db);
        sql_over_clickhouse_agrees_with_the_parquet_tables(&config, &data, &db);
        let want = Expected::from_topics(&config, &data);
        assert!(
            want.ledger_entries + want.overtime.len() > 0,
            "the replay settled trips or shifts"
        );
        // The tables the sinks create, and the positions they keep.
        let tables: BTreeSet<String> = db
            .pg("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        for table in [
            "trip_events",
            "trips",
            "ledger_entries",
            "wallet_balances",
            "overtime_records",
            "driver_locations",
            "fleetstream_sink_offsets",
        ] {
            assert!(tables.contains(table), "{table} in {tables:?}");
        }
        // A live run over the same log and databases writes nothing again.
        run_until_caught_up(&config, &data, None);
        check_everything_landed_once(&config, &data, &db);
    }
}

/// `fleetstream sql` over a data directory, as CSV.
fn sql(config: &Path, data: &Path, query: &str) -> String {
    let out = Command::new(bin())
        .args(["sql", "--format", "csv", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .arg(query)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Analyst queries over the `clickhouse.` result tables, run by the real server where their
/// filters translate and by DataFusion where they do not, answer exactly what the same queries
/// over the `parquet.` tables answer; the filters reach ClickHouse as `FINAL ... WHERE`.
fn sql_over_clickhouse_agrees_with_the_parquet_tables(config: &Path, data: &Path, db: &Databases) {
    // (query over `{s}`, or a ClickHouse query and its Parquet counterpart when the Parquet
    // folder keeps every version of a row that ClickHouse collapses to its last.)
    let overtime = "SELECT employee_id, period, CAST(period_start AS VARCHAR) AS start, worked_minutes, \
                    ot_150_minutes, ot_200_minutes, weekly_ot_minutes, night_minutes, version, final \
                    FROM {from} WHERE employee_id LIKE 'E%' AND period_start >= DATE '2020-01-01' ORDER BY employee_id, period, start";
    let latest_overtime = "(SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY employee_id, \
                           period, period_start ORDER BY version DESC) AS newest FROM parquet.overtime_records) \
                           WHERE newest = 1)";
    let pairs: Vec<(String, String)> = [
        "SELECT COUNT(*) AS n, SUM(amount) AS total FROM {s}.ledger_entries",
        "SELECT account_id, COUNT(*) AS n, SUM(amount) AS total FROM {s}.ledger_entries \
         WHERE account_id LIKE 'driver:%' AND amount > 0 GROUP BY account_id ORDER BY account_id",
        "SELECT trip_id, amount FROM {s}.ledger_entries WHERE account_id = 'platform:revenue' \
         ORDER BY trip_id, amount LIMIT 5",
        "SELECT type, COUNT(*) AS n FROM {s}.trip_events \
         WHERE type IN ('completed', 'no_driver', 'cancelled') OR reason IS NOT NULL GROUP BY type ORDER BY type",
        "SELECT vehicle_class, COUNT(*) AS n, SUM(fare) AS fares, MAX(surge) AS surge FROM {s}.trip_events \
         WHERE type = 'completed' AND fare >= 0 GROUP BY vehicle_class ORDER BY vehicle_class",
        // A filter ClickHouse cannot run: DataFusion applies it to the rows that come back.
        "SELECT COUNT(*) AS n FROM {s}.trip_events \
         WHERE type = 'requested' AND haversine_km(pickup_lat, pickup_lng, dropoff_lat, dropoff_lng) > 2",
        // A result table joined with a store table.
        "SELECT t.status, COUNT(*) AS n, SUM(e.amount) AS total FROM {s}.ledger_entries e \
         JOIN trips t ON e.trip_id = t.trip_id GROUP BY t.status ORDER BY t.status",
    ]
    .iter()
    .map(|q| (q.replace("{s}", "clickhouse"), q.replace("{s}", "parquet")))
    .chain([(
        overtime.replace("{from}", "clickhouse.overtime_records"),
        overtime.replace("{from}", latest_overtime),
    )])
    .collect();
    let mut rows = 0;
    for (clickhouse, parquet) in &pairs {
        let got = sql(config, data, clickhouse);
        let want = sql(config, data, parquet);
        assert_eq!(got, want, "{clickhouse}");
        rows += got.lines().count() - 1;
    }
    assert!(
        rows > pairs.len(),
        "the queries found the sample's rows ({rows} in all)"
    );
    // What ClickHouse itself ran for those queries: the filters went down, with FINAL.
    db.ch("SYSTEM FLUSH LOGS");
    let ran: Vec<String> = db
        .ch("SELECT query FROM system.query_log WHERE type = 2 AND query LIKE '%FROM {db}.%FINAL%'")
        .into_iter()
        .map(|r| r.join("\t").replace("\\'", "'"))
        .collect();
    for pushed in [
        "FROM {db}.ledger_entries FINAL WHERE account_id = 'platform:revenue'",
        "FROM {db}.trip_events FINAL WHERE type = 'requested'",
    ] {
        let pushed = pushed.replace("{db}", &db.ch_db);
        assert!(
            ran.iter().any(|q| q.contains(&pushed)),
            "ClickHouse ran no query with {pushed}: {ran:#?}"
        );
    }
}

/// A running `fleetstream run` whose stderr is collected.
struct Running {
    child: Child,
    log: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Running { child, log }
    }

    fn logged(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn stop(mut self) {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{}", self.log.lock().unwrap().join("\n"));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn generated_city(dir: &Path) -> PathBuf {
    let input = dir.join("city.jsonl");
    let out = Command::new(bin())
        .args([
            "generate",
            "city",
            "--drivers",
            "120",
            "--trips",
            "1500",
            "--duration",
            "40m",
            "--ping-interval",
            "30s",
            "--out",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    input
}

/// Rows in a table (none before the sink has created it).
fn pg_count(db: &Databases, table: &str) -> usize {
    if db.pg(&format!("SELECT to_regclass('{table}') IS NOT NULL"))[0][0] != "t" {
        return 0;
    }
    db.pg(&format!("SELECT count(*) FROM {table}"))[0][0]
        .parse()
        .unwrap()
}

#[test]
fn a_run_killed_while_the_sinks_write_adds_no_duplicate_and_loses_no_row() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let db = Databases::create("killed");
    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, db.config_with_batches(&data, "", 50)).unwrap();
    let input = generated_city(dir.path());
    for round in 0..2 {
        let running = Running::start(run(&config, &data, (round == 0).then_some(input.as_path())));
        // Kill once rows are arriving, before everything is written.
        let before = if round == 0 {
            0
        } else {
            pg_count(&db, "trip_events")
        };
        wait_until("rows arriving in PostgreSQL", Duration::from_secs(120), || {
            pg_count(&db, "trip_events") > before + 50
        });
        let mut running = running;
        running.child.kill().unwrap();
        running.child.wait().unwrap();
    }
    let written = pg_count(&db, "trip_events");
    run_until_caught_up(&config, &data, None);
    assert!(
        written < pg_count(&db, "trip_events"),
        "the kills came before everything was written"
    );
    check_everything_landed_once(&config, &data, &db);
}

#[test]
fn databases_stopped_for_30_seconds_are_caught_up_with_nothing_lost() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let db = Databases::create("outage");
    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, db.config(&data, "")).unwrap();
    let input = generated_city(dir.path());
    let pg_ctl = server("FLEETSTREAM_TEST_POSTGRES_CTL");
    let ch_ctl = server("FLEETSTREAM_TEST_CLICKHOUSE_CTL");
    let ctl = |ctl: &str, action: &str| {
        let status = Command::new(ctl).arg(action).status().unwrap();
        assert!(status.success(), "{ctl} {action}");
    };

    // The first half lands while the databases are up.
    let text = std::fs::read_to_string(&input).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let (first_half, second_half) = (dir.path().join("first.jsonl"), dir.path().join("second.jsonl"));
    std::fs::write(&first_half, first.join("\n")).unwrap();
    std::fs::write(&second_half, second.join("\n")).unwrap();
    run_until_caught_up(&config, &data, Some(&first_half));
    let before = pg_count(&db, "trip_events");
    assert!(before > 0);

    // The second half is processed while both databases are down for 30 s.
    ctl(&pg_ctl, "stop");
    ctl(&ch_ctl, "stop");
    let outage = Instant::now();
    let running = Running::start(run(&config, &data, Some(&second_half)));
    std::thread::sleep(Duration::from_secs(30));
    assert!(
        running.logged("retrying") > 0,
        "the sinks retried during the outage"
    );
    assert_eq!(
        running.logged("caught up"),
        0,
        "nothing is caught up while the databases are down"
    );
    ctl(&pg_ctl, "start");
    ctl(&ch_ctl, "start");
    eprintln!("the databases were down for {:?}", outage.elapsed());
    wait_until("the run catching up", Duration::from_secs(180), || {
        running.logged("caught up") > 0
    });
    running.stop();
    assert!(pg_count(&db, "trip_events") > before);
    check_everything_landed_once(&config, &data, &db);
}

#[test]
fn a_row_postgresql_refuses_goes_to_the_sink_dlq_with_its_message_and_the_rest_lands() {
    let _turn = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let db = Databases::create("refused");
    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[sinks.postgres]\nurl = \"{}\"\n", db.pg_url)).unwrap();
    // PostgreSQL text cannot hold a NUL character; ClickHouse and Parquet can. Two trips are
    // cancelled by their riders, one with a NUL in the free-text reason.
    let mut input = String::new();
    let mut line = |topic: &str, key: &str, value: serde_json::Value| {
        input.push_str(&serde_json::json!({"topic": topic, "key": key, "value": value}).to_string());
        input.push('\n');
    };
    line(
        "driver.status",
        "d1",
        serde_json::json!({"driver_id": "d1", "status": "online", "vehicle_class": "economy", "ts": "2026-11-02T07:00:00Z"}),
    );
    line(
        "gps.pings",
        "d1",
        serde_json::json!({"event_id": "p1", "driver_id": "d1", "lat": 52.5287, "lng": 13.3509, "ts": "2026-11-02T07:00:01Z"}),
    );
    for (i, reason) in ["changed my mind", "changed\u{0}my mind"].iter().enumerate() {
        let trip = format!("t{i}");
        line(
            "gps.pings",
            "d1",
            serde_json::json!({"event_id": format!("p{}", i + 2), "driver_id": "d1", "lat": 52.5287, "lng": 13.3509,
            "ts": format!("2026-11-02T07:0{}:00Z", 1 + 2 * i)}),
        );
        line(
            "trip.commands",
            &trip,
            serde_json::json!({"type": "request", "trip_id": trip, "rider_id": format!("r{i}"),
            "pickup": {"lat": 52.5290, "lng": 13.3510}, "dropoff": {"lat": 52.5400, "lng": 13.3600},
            "vehicle_class": "economy", "ts": format!("2026-11-02T07:0{}:02Z", 1 + 2 * i)}),
        );
        line(
            "trip.commands",
            &trip,
            serde_json::json!({"type": "cancel", "trip_id": trip, "by": "rider", "reason": reason,
            "ts": format!("2026-11-02T07:0{}:05Z", 1 + 2 * i)}),
        );
    }
    let input_file = dir.path().join("input.jsonl");
    std::fs::write(&input_file, input).unwrap();
    let out = Command::new(bin())
        .args(["replay", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--input")
        .arg(&input_file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let trips: BTreeMap<String, String> = db
        .pg("SELECT trip_id, status FROM trips")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(
        trips.get("t0").map(String::as_str),
        Some("cancelled"),
        "{trips:?}"
    );
    let events = db.pg("SELECT trip_id, type, COALESCE(reason, '') FROM trip_events ORDER BY ts");
    assert!(
        events
            .iter()
            .any(|r| r[0] == "t0" && r[1] == "cancelled" && r[2] == "changed my mind"),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|r| r[0] == "t1" && r[1] == "cancelled"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|r| r[0] == "t1" && r[1] == "requested"),
        "the refused row's neighbours land: {events:?}"
    );
    let letters = dump(&config, &data, "fleetstream-sink-postgres.dlq");
    assert_eq!(letters.len(), 1, "the refused event: {letters:?}");
    let v = &letters[0]["value"];
    assert_eq!(v["table"], "trip_events");
    assert_eq!(v["topic"], "trip.events");
    assert_eq!(v["value"]["trip_id"], "t1");
    assert_eq!(v["value"]["reason"], "changed\u{0}my mind");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("0x00"), "PostgreSQL's message: {message}");
}
