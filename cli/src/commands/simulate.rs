//! `fleetstream simulate`: a synthetic city driven through the edge API — drivers going online
//! and pinging every 4 s, riders requesting trips, drivers answering offers (accept or decline),
//! starting and completing rides, metro drivers punching in and out — with a progress bar and a
//! summary of what happened and how fast the API answered. Riders sometimes top up their wallets;
//! metro drivers are mid-shift at the start and clock out during the run.
//!
//! Offers expire 15 s after they are made, in event time: at high speeds the round trip through
//! the API (commit, live feed, answer) takes more simulated seconds than that, and most offers
//! expire unanswered. Up to about 10x the city behaves as at 1x.
//!
//! Time runs `--speed` times faster than the wall clock: every command carries the simulated
//! time, and `--duration` is simulated time (10m at 10x runs for one real minute). Drivers learn
//! about offers from the API's own live feed (`GET /v1/dashboard/events`), as a driver app would.
//!
//! With `--direct` (load tests) there is no network and no server: the simulator opens the log
//! of its configuration itself and hands each command to the API's router in process, so it
//! gets the same validation and lands on the same topics, with no socket, no HTTP server and no
//! rate limit in between. On the embedded log the simulator also runs the topology (it is the
//! only process that may open that data directory); on Kafka the running instances process
//! what it appends.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt as _};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tower::ServiceExt as _;

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Drivers in the city.
    #[arg(long, default_value_t = 100)]
    pub drivers: usize,
    /// Riders; each requests a ride about every 10 simulated minutes.
    #[arg(long, default_value_t = 200)]
    pub riders: usize,
    /// Metro drivers punching timesheets.
    #[arg(long, default_value_t = 10)]
    pub employees: usize,
    /// Simulated time to run, e.g. 10m.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// How much faster than the wall clock simulated time runs, e.g. 10x.
    #[arg(long, default_value = "1x", value_parser = parse_speed)]
    pub speed: f64,
    /// The edge API, e.g. http://127.0.0.1:8080.
    #[arg(long, required_unless_present = "direct", conflicts_with = "direct")]
    pub target: Option<String>,
    /// Bearer token with role app (or admin), for `--target`.
    #[arg(long, env = "FLEETSTREAM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Straight into the log of the configuration (load tests): no network, no server.
    #[arg(long)]
    pub direct: bool,
    /// The configuration whose log `--direct` writes to.
    #[arg(long, requires = "direct")]
    pub config: Option<PathBuf>,
    /// The data directory for `--direct` (default from the configuration).
    #[arg(long, requires = "direct")]
    pub data_dir: Option<PathBuf>,
    /// Seed of the city (positions, decisions).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Concurrent requests at most.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// No progress bar (logs, CI).
    #[arg(long)]
    pub quiet: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('x')
        .parse()
        .map_err(|_| format!("{s:?} is not a speed like 10x"))?;
    if !(v > 0.0 && v <= 1000.0) {
        return Err(format!("speed {v} is outside (0, 1000]"));
    }
    Ok(v)
}

/// What the simulation did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub requests: u64,
    pub failed: u64,
    pub requests_per_second: f64,
    pub pings: u64,
    pub trips_requested: u64,
    pub offers: u64,
    pub matches: u64,
    pub completed: u64,
    pub no_driver: u64,
    pub punches: u64,
    pub top_ups: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub errors: BTreeMap<String, u64>,
    /// Trip ids that completed (for checks).
    #[serde(skip)]
    pub completed_trips: Vec<String>,
}

/// Latitude and longitude, degrees.
type Point = (f64, f64);

const CENTER: Point = (52.5200, 13.4050);

struct Driver {
    id: String,
    lat: f64,
    lng: f64,
    next_ping: i64,
}

enum Action {
    Answer {
        trip: String,
        driver: usize,
        accept: bool,
    },
    Start {
        trip: String,
        driver: usize,
    },
    Complete {
        trip: String,
        driver: usize,
    },
    Punch {
        employee: usize,
        kind: &'static str,
    },
}

/// Actions in simulated-time order.
#[derive(Default)]
struct Agenda {
    due: BinaryHeap<Reverse<(i64, u64)>>,
    actions: HashMap<u64, Action>,
    seq: u64,
}

impl Agenda {
    fn schedule(&mut self, at: i64, action: Action) {
        self.seq += 1;
        self.actions.insert(self.seq, action);
        self.due.push(Reverse((at, self.seq)));
    }

    /// The next action due by `now`.
    fn next(&mut self, now: i64) -> Option<(i64, Action)> {
        let Reverse((at, id)) = *self.due.peek()?;
        if at > now {
            return None;
        }
        self.due.pop();
        self.actions.remove(&id).map(|a| (at, a))
    }
}

/// How commands reach the API: over HTTP, or handed to its router in this process.
enum Transport {
    Http {
        client: reqwest::Client,
        base: String,
        token: String,
    },
    InProcess {
        router: axum::Router,
        token: String,
    },
}

/// A stream of body chunks, whichever the transport.
type Chunks = Pin<Box<dyn Stream<Item = Result<bytes::Bytes>> + Send>>;

impl Transport {
    /// Sends a request; answers the status and the body, or why there was none.
    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Chunks), String> {
        match self {
            Transport::Http { client, base, token } => {
                let url = format!("{base}{path}");
                let request = match body {
                    Some(body) => client.post(url).json(body),
                    None => client.get(url).timeout(Duration::from_secs(24 * 3600)),
                };
                let response = request.bearer_auth(token).send().await.map_err(|e| {
                    if e.is_timeout() {
                        "timeout".to_string()
                    } else {
                        "connection".to_string()
                    }
                })?;
                let status = response.status().as_u16();
                let chunks = response.bytes_stream().map(|c| c.map_err(anyhow::Error::from));
                Ok((status, Box::pin(chunks)))
            }
            Transport::InProcess { router, token } => {
                let request = axum::http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(match body {
                        Some(body) => axum::body::Body::from(serde_json::to_vec(body).expect("JSON")),
                        None => axum::body::Body::empty(),
                    })
                    .map_err(|e| format!("request: {e}"))?;
                let response = router
                    .clone()
                    .oneshot(request)
                    .await
                    .map_err(|e| format!("router: {e}"))?;
                let status = response.status().as_u16();
                let chunks = http_body_util::BodyExt::into_data_stream(response.into_body())
                    .map(|c| c.map_err(anyhow::Error::from));
                Ok((status, Box::pin(chunks)))
            }
        }
    }
}

/// A whole body as text.
async fn text(mut chunks: Chunks) -> String {
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = chunks.next().await {
        out.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Shared {
    transport: Transport,
    latency: Mutex<Histogram<u64>>,
    stats: Mutex<Summary>,
    gate: Semaphore,
}

impl Shared {
    /// Posts and records latency and failures; never stops the simulation.
    async fn post(self: &Arc<Self>, path: String, body: Value) {
        let Ok(_permit) = self.gate.acquire().await else {
            return;
        };
        let started = Instant::now();
        let answer = match self.transport.send("POST", &path, Some(&body)).await {
            Ok((status, chunks)) => Ok((status, text(chunks).await)),
            Err(e) => Err(e),
        };
        let micros = started.elapsed().as_micros() as u64;
        let _ = self.latency.lock().await.record(micros.max(1));
        let mut stats = self.stats.lock().await;
        stats.requests += 1;
        match answer {
            Ok((status, _)) if (200..300).contains(&status) => {}
            Ok((status, text)) => {
                stats.failed += 1;
                let reason = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_string))
                    .unwrap_or_default();
                *stats.errors.entry(format!("{status} {reason}")).or_default() += 1;
            }
            Err(e) => {
                stats.failed += 1;
                *stats.errors.entry(e).or_default() += 1;
            }
        }
    }
}

/// The instance a `--direct` simulation runs beside: the log of its configuration, the API's
/// router over it, and on the embedded log the topology itself.
struct Direct {
    running: Option<fleetstream_topology::RunningEngine>,
    tail: fleetstream_api::reads::Tail,
}

impl Direct {
    fn start(args: &SimulateArgs) -> Result<(Direct, Transport)> {
        let mut config = crate::config::AppConfig::load(args.config.as_deref())?;
        if let Some(dir) = &args.data_dir {
            config.data_dir = dir.clone();
        }
        // A load test is not a client to throttle.
        config.api.rate_limit = u32::MAX;
        config.api.burst = u32::MAX;
        let backend = crate::backend::open(&config)?;
        let (engine, stores) = crate::backend::engine(&config, &backend)?;
        let running = if backend.log.is_distributed() {
            None
        } else {
            Some(engine.start()?)
        };
        let (keys, _) = crate::edge::keys(&config)?;
        let token = keys.mint(
            "simulate",
            fleetstream_api::Role::Admin,
            Duration::from_secs(7 * 24 * 3600),
        )?;
        let ready = Arc::new(AtomicBool::new(true));
        let api = crate::edge::api(&config, &engine, stores, keys, ready)?;
        let tail = fleetstream_api::reads::tail_trip_events(api.clone());
        let router = fleetstream_api::router(api);
        Ok((Direct { running, tail }, Transport::InProcess { router, token }))
    }

    /// Waits (at most `patience`) until the topology has processed everything appended.
    async fn caught_up(&self, patience: Duration) {
        let Some(running) = &self.running else { return };
        let started = Instant::now();
        while !running.is_caught_up() && running.is_running() && started.elapsed() < patience {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> Result<()> {
        self.tail.stop();
        if let Some(running) = self.running {
            tokio::task::spawn_blocking(move || running.shutdown())
                .await
                .context("stopping the topology")??;
        }
        Ok(())
    }
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let dp = (b.0 - a.0).to_radians();
    let dl = (b.1 - a.1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0088 * h.sqrt().asin()
}

fn around(rng: &mut StdRng, km: f64) -> (f64, f64) {
    let r = km * rng.gen_range(0.0f64..1.0).sqrt();
    let angle = rng.gen_range(0.0..std::f64::consts::TAU);
    (
        CENTER.0 + r * angle.cos() / 111.0,
        CENTER.1 + r * angle.sin() / (111.0 * CENTER.0.to_radians().cos()),
    )
}

/// Follows the API's live trip feed.
async fn follow(shared: Arc<Shared>, events: mpsc::UnboundedSender<Value>) -> Result<()> {
    let (status, mut stream) = shared
        .transport
        .send("GET", "/v1/dashboard/events", None)
        .await
        .map_err(|e| anyhow::anyhow!("opening the live feed: {e}"))?;
    if !(200..300).contains(&status) {
        bail!("the live feed answered {status}: {}", text(stream).await);
    }
    let mut buffer = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk: bytes::Bytes = chunk?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut name = "";
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if name == "trip"
                && let Ok(v) = serde_json::from_str::<Value>(&data)
                && events.send(v).is_err()
            {
                return Ok(());
            }
        }
    }
    Ok(())
}

pub async fn simulate(args: SimulateArgs) -> Result<Summary> {
    if args.drivers == 0 && args.riders == 0 && args.employees == 0 {
        bail!("nothing to simulate: --drivers, --riders and --employees are all 0");
    }
    let (direct, transport) = if args.direct {
        let (direct, transport) = Direct::start(&args)?;
        (Some(direct), transport)
    } else {
        let base = args
            .target
            .as_deref()
            .context("--target or --direct is needed")?
            .trim_end_matches('/')
            .to_string();
        let token = args
            .token
            .clone()
            .context("--token (or FLEETSTREAM_TOKEN) is needed with --target")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(args.concurrency)
            .build()?;
        let health = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .with_context(|| format!("reaching {base}"))?;
        if !health.status().is_success() {
            bail!("{base} is not ready: {}", health.status());
        }
        (None, Transport::Http { client, base, token })
    };
    let shared = Arc::new(Shared {
        transport,
        latency: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        stats: Mutex::new(Summary::default()),
        gate: Semaphore::new(args.concurrency.max(1)),
    });
    let (tx, mut events) = mpsc::unbounded_channel();
    let feed = tokio::spawn(follow(shared.clone(), tx));
    // Let the feed open before the first request.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut rng = StdRng::seed_from_u64(args.seed);
    let real_start = Instant::now();
    let sim_start = Utc::now().timestamp_millis();
    let sim_now =
        |at: Instant| sim_start + (at.duration_since(real_start).as_secs_f64() * args.speed * 1000.0) as i64;
    let sim_end = sim_start + args.duration.as_millis() as i64;
    // Names of this run's drivers and trips: a later run does not inherit their state.
    let run = format!("{:x}", sim_start);
    let mut drivers: Vec<Driver> = (0..args.drivers)
        .map(|i| {
            let (lat, lng) = around(&mut rng, 6.0);
            Driver {
                id: format!("sim-{run}-d{i:05}"),
                lat,
                lng,
                next_ping: sim_start + rng.gen_range(0..4_000),
            }
        })
        .collect();
    let index: HashMap<String, usize> = drivers
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.clone(), i))
        .collect();
    for d in &drivers {
        shared
            .post(
                format!("/v1/drivers/{}/status", d.id),
                json!({"status": "online", "vehicle_class": "economy", "ts": rfc3339(sim_start)}),
            )
            .await;
    }
    let mut due = Agenda::default();
    // Metro drivers are mid-shift when the simulation starts (their earlier punches are sent
    // first) and clock out during its first half, so that every run produces overtime records.
    let half = (args.duration.as_millis() as i64 / 2).max(1);
    for e in 0..args.employees {
        let clock_out = sim_start + rng.gen_range(0..half);
        let clock_in = clock_out - rng.gen_range(7 * 3_600_000..11 * 3_600_000);
        due.schedule(
            clock_in,
            Action::Punch {
                employee: e,
                kind: "clock_in",
            },
        );
        due.schedule(
            clock_in + 4 * 3_600_000,
            Action::Punch {
                employee: e,
                kind: "break_start",
            },
        );
        due.schedule(
            clock_in + 4 * 3_600_000 + 1_800_000,
            Action::Punch {
                employee: e,
                kind: "break_end",
            },
        );
        due.schedule(
            clock_out,
            Action::Punch {
                employee: e,
                kind: "clock_out",
            },
        );
    }
    let mut trips: HashMap<String, (Point, Point)> = HashMap::new();
    let mut request_credit = 0.0f64;
    let mut trip_seq = 0u64;
    let mut last = sim_start;
    let progress = (!args.quiet).then(|| {
        let bar = indicatif::ProgressBar::new(args.duration.as_secs());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} sim s  {msg}").expect("a template"),
        );
        bar
    });
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut pending = tokio::task::JoinSet::new();
    loop {
        tick.tick().await;
        let now = sim_now(Instant::now()).min(sim_end);
        // Live trip events: offers to answer, rides to drive.
        while let Ok(event) = events.try_recv() {
            let trip = event["trip_id"].as_str().unwrap_or_default().to_string();
            let driver = event["driver_id"].as_str().and_then(|d| index.get(d)).copied();
            let mut stats = shared.stats.lock().await;
            match (event["type"].as_str().unwrap_or_default(), driver) {
                ("offered", Some(d)) if trips.contains_key(&trip) => {
                    stats.offers += 1;
                    let accept = rng.gen_bool(0.85);
                    due.schedule(
                        now + rng.gen_range(1_000..6_000),
                        Action::Answer {
                            trip,
                            driver: d,
                            accept,
                        },
                    );
                }
                ("matched", Some(d)) if trips.contains_key(&trip) => {
                    stats.matches += 1;
                    let (pickup, _) = trips[&trip];
                    let approach =
                        haversine_km((drivers[d].lat, drivers[d].lng), pickup) / 30.0 * 3_600_000.0;
                    due.schedule(now + 30_000 + approach as i64, Action::Start { trip, driver: d });
                }
                ("started", Some(d)) if trips.contains_key(&trip) => {
                    let (pickup, dropoff) = trips[&trip];
                    drivers[d].lat = pickup.0;
                    drivers[d].lng = pickup.1;
                    let ride = haversine_km(pickup, dropoff) / 25.0 * 3_600_000.0;
                    due.schedule(now + 60_000 + ride as i64, Action::Complete { trip, driver: d });
                }
                ("completed", _) if trips.contains_key(&trip) => {
                    stats.completed += 1;
                    stats.completed_trips.push(trip);
                }
                ("no_driver", _) if trips.contains_key(&trip) => stats.no_driver += 1,
                _ => {}
            }
        }
        // Due actions.
        while let Some((at, action)) = due.next(now) {
            let ts = rfc3339(at);
            let (path, body) = match action {
                Action::Answer { trip, driver, accept } => {
                    let action = if accept { "accept" } else { "decline" };
                    (
                        format!("/v1/trips/{trip}/{action}"),
                        json!({"driver_id": drivers[driver].id, "ts": ts}),
                    )
                }
                Action::Start { trip, driver } => (
                    format!("/v1/trips/{trip}/start"),
                    json!({"driver_id": drivers[driver].id, "ts": ts}),
                ),
                Action::Complete { trip, driver } => {
                    let (_, dropoff) = trips[&trip];
                    drivers[driver].lat = dropoff.0;
                    drivers[driver].lng = dropoff.1;
                    drivers[driver].next_ping = at;
                    (
                        format!("/v1/trips/{trip}/complete"),
                        json!({"driver_id": drivers[driver].id, "ts": ts}),
                    )
                }
                Action::Punch { employee, kind } => {
                    shared.stats.lock().await.punches += 1;
                    (
                        "/v1/timesheets/punches".to_string(),
                        json!({"employee_id": format!("sim-e{employee:04}"), "kind": kind, "ts": ts}),
                    )
                }
            };
            let s = shared.clone();
            pending.spawn(async move { s.post(path, body).await });
        }
        // Pings every 4 s, moving a little.
        let mut batch = Vec::new();
        for d in drivers.iter_mut() {
            while d.next_ping <= now {
                d.lat += rng.gen_range(-0.0003..0.0003);
                d.lng += rng.gen_range(-0.0004..0.0004);
                batch.push(json!({"driver_id": d.id, "lat": d.lat, "lng": d.lng, "speed_kmh": rng.gen_range(0.0..50.0), "ts": rfc3339(d.next_ping)}));
                d.next_ping += 4_000;
            }
        }
        if !batch.is_empty() {
            shared.stats.lock().await.pings += batch.len() as u64;
            for chunk in batch.chunks(5_000) {
                let s = shared.clone();
                let body = Value::Array(chunk.to_vec());
                pending.spawn(async move { s.post("/v1/gps".into(), body).await });
            }
        }
        // Ride requests: each rider about once per 10 simulated minutes.
        request_credit += args.riders as f64 * (now - last) as f64 / 600_000.0;
        last = now;
        while request_credit >= 1.0 {
            request_credit -= 1.0;
            trip_seq += 1;
            let rider = rng.gen_range(0..args.riders.max(1));
            let pickup = around(&mut rng, 5.0);
            let dropoff = around(&mut rng, 8.0);
            let trip = format!("sim-{run}-{trip_seq}");
            // Some riders top up their wallet before riding.
            if rng.gen_bool(0.25) {
                shared.stats.lock().await.top_ups += 1;
                let s = shared.clone();
                let body = json!({"amount": "20.00", "ts": rfc3339(now)});
                pending.spawn(async move {
                    s.post(format!("/v1/wallets/rider:sim-r{rider:05}/top-ups"), body)
                        .await
                });
            }
            trips.insert(trip.clone(), (pickup, dropoff));
            shared.stats.lock().await.trips_requested += 1;
            let body = json!({"trip_id": trip, "rider_id": format!("sim-r{rider:05}"), "pickup": {"lat": pickup.0, "lng": pickup.1}, "dropoff": {"lat": dropoff.0, "lng": dropoff.1}, "vehicle_class": "economy", "ts": rfc3339(now)});
            let s = shared.clone();
            pending.spawn(async move { s.post("/v1/trips".into(), body).await });
        }
        while pending.try_join_next().is_some() {}
        if let Some(bar) = &progress {
            let stats = shared.stats.lock().await;
            bar.set_position(((now - sim_start) / 1000) as u64);
            bar.set_message(format!(
                "{} requests, {} trips, {} matched, {} no_driver",
                stats.requests, stats.trips_requested, stats.matches, stats.no_driver
            ));
        }
        if now >= sim_end {
            break;
        }
        if feed.is_finished() {
            break;
        }
    }
    while pending.join_next().await.is_some() {}
    if let Some(direct) = &direct {
        direct.caught_up(Duration::from_secs(60)).await;
    }
    // Give the last events a moment to arrive.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(1_500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(event) = events.try_recv() {
            let trip = event["trip_id"].as_str().unwrap_or_default().to_string();
            if !trips.contains_key(&trip) {
                continue;
            }
            let mut stats = shared.stats.lock().await;
            match event["type"].as_str().unwrap_or_default() {
                "completed" => {
                    stats.completed += 1;
                    stats.completed_trips.push(trip);
                }
                "matched" => stats.matches += 1,
                "no_driver" => stats.no_driver += 1,
                _ => {}
            }
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if feed.is_finished() {
        match feed.await {
            Ok(Err(e)) => bail!("the live feed failed: {e:#}"),
            Err(e) => bail!("the live feed failed: {e}"),
            Ok(Ok(())) => {}
        }
    } else {
        feed.abort();
    }
    if let Some(direct) = direct {
        direct.stop().await?;
    }
    let latency = shared.latency.lock().await;
    let mut summary = shared.stats.lock().await.clone();
    let secs = real_start.elapsed().as_secs_f64();
    summary.requests_per_second = summary.requests as f64 / secs.max(0.001);
    summary.latency_p50_ms = latency.value_at_quantile(0.50) as f64 / 1000.0;
    summary.latency_p99_ms = latency.value_at_quantile(0.99) as f64 / 1000.0;
    summary.latency_max_ms = latency.max() as f64 / 1000.0;
    Ok(summary)
}

/// The summary as the terminal shows it, or as JSON.
pub fn print(summary: &Summary, json: bool) {
    if json {
        println!("{}", serde_json::to_string(summary).expect("JSON"));
        return;
    }
    println!(
        "requests        {:>10}  ({:.0}/s, {} failed)",
        summary.requests, summary.requests_per_second, summary.failed
    );
    println!("pings           {:>10}", summary.pings);
    println!("trips requested {:>10}", summary.trips_requested);
    println!("offers          {:>10}", summary.offers);
    println!("matches         {:>10}", summary.matches);
    println!("completed       {:>10}", summary.completed);
    println!("no_driver       {:>10}", summary.no_driver);
    println!("punches         {:>10}", summary.punches);
    println!("top-ups         {:>10}", summary.top_ups);
    println!(
        "latency ms      p50 {:.2}  p99 {:.2}  max {:.2}",
        summary.latency_p50_ms, summary.latency_p99_ms, summary.latency_max_ms
    );
    for (error, n) in &summary.errors {
        println!("error {error}: {n}");
    }
}
