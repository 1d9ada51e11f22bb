//! The edge API in process (no socket): every endpoint, its validation errors and its auth
//! rules, over a live engine on the embedded log.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use fleetstream::config::AppConfig;
use fleetstream_api::{Api, Keys, Limits, Role};
use fleetstream_operators::topology;
use fleetstream_topology::log::Log;
use fleetstream_topology::{Engine, RunningEngine, TopicPartition};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// One RSA pair for every test of this file (generating one takes a while).
fn pem() -> &'static (String, String) {
    static PEM: OnceLock<(String, String)> = OnceLock::new();
    PEM.get_or_init(|| fleetstream_api::auth::generate_pem().unwrap())
}

fn keys() -> Keys {
    let (private, public) = pem();
    Keys::from_pem(public.as_bytes(), Some(private.as_bytes())).unwrap()
}

struct Edge {
    router: Router,
    api: Api,
    log: Arc<dyn Log>,
    running: Option<RunningEngine>,
    _tail: fleetstream_api::reads::Tail,
    _dir: tempfile::TempDir,
}

impl Drop for Edge {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown();
        }
    }
}

fn edge_with(limits: Option<Limits>) -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let mut config = AppConfig::load(None).unwrap();
    config.data_dir = dir.path().join("data");
    if let Some(limits) = limits {
        config.api.rate_limit = limits.rate_per_second;
        config.api.burst = limits.burst;
    }
    let backend = fleetstream::backend::open(&config).unwrap();
    let jobs = topology::build(&config.app_id, &config.jobs()).unwrap();
    let engine = Engine::new(
        jobs.topology,
        backend.log.clone(),
        backend.state.clone(),
        config.engine(),
    )
    .unwrap();
    let running = engine.start().unwrap();
    let ready = Arc::new(AtomicBool::new(true));
    let api = fleetstream::edge::api(&config, &engine, jobs.stores, keys(), ready).unwrap();
    let tail = fleetstream_api::reads::tail_trip_events(api.clone());
    Edge {
        router: fleetstream_api::router(api.clone()),
        api,
        log: backend.log.clone(),
        running: Some(running),
        _tail: tail,
        _dir: dir,
    }
}

fn edge() -> Edge {
    edge_with(None)
}

fn token(role: Role, sub: &str) -> String {
    keys().mint(sub, role, Duration::from_secs(600)).unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an error answer: status, code and the field it names.
    #[track_caller]
    fn error(&self, status: StatusCode, field: Option<&str>) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
        assert_eq!(body["field"].as_str(), field, "{body}");
        body["error"].as_str().unwrap().to_string()
    }
}

impl Edge {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let body = match body {
            Some(Value::String(raw)) => Body::from(raw),
            Some(v) => Body::from(serde_json::to_vec(&v).unwrap()),
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn post(&self, uri: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, uri, Some(token), Some(body), &[]).await
    }

    async fn get(&self, uri: &str, token: &str) -> Answer {
        self.call(Method::GET, uri, Some(token), None, &[]).await
    }

    fn end(&self, topic: &str) -> u64 {
        let n = self.log.partitions(topic).unwrap();
        (0..n)
            .map(|p| self.log.end_offset(&TopicPartition::new(topic, p)).unwrap())
            .sum()
    }

    /// Polls `uri` until `done` holds for its JSON (10 s at most).
    async fn until(&self, uri: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let answer = self.get(uri, token).await;
            if answer.status == StatusCode::OK {
                let body = answer.json();
                if done(&body) {
                    return body;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{uri}: last answer {} {}",
                answer.status,
                answer.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked() {
    let edge = edge();
    let ping = json!({"driver_id": "d1", "lat": 52.52, "lng": 13.40});
    let none = edge
        .call(Method::POST, "/v1/gps", None, Some(ping.clone()), &[])
        .await;
    assert!(
        none.error(StatusCode::UNAUTHORIZED, None)
            .contains("no bearer token")
    );
    let garbage = edge.post("/v1/gps", "not-a-jwt", ping.clone()).await;
    assert!(
        garbage
            .error(StatusCode::UNAUTHORIZED, None)
            .contains("invalid token")
    );
    // Signed by another key.
    let (other, _) = Keys::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
    let foreign = other.mint("x", Role::Admin, Duration::from_secs(60)).unwrap();
    edge.post("/v1/gps", &foreign, ping.clone())
        .await
        .error(StatusCode::UNAUTHORIZED, None);
    // Expired (beyond the 30 s leeway).
    let expired = {
        let (private, _) = pem();
        let claims = fleetstream_api::Claims {
            sub: "x".into(),
            role: Role::Admin,
            iat: 1,
            exp: 2,
            iss: "fleetstream".into(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    assert!(
        edge.post("/v1/gps", &expired, ping.clone())
            .await
            .error(StatusCode::UNAUTHORIZED, None)
            .contains("xpired")
    );
    let basic = edge
        .call(
            Method::POST,
            "/v1/gps",
            None,
            Some(ping.clone()),
            &[("authorization", "Basic abc")],
        )
        .await;
    basic.error(StatusCode::UNAUTHORIZED, None);
    assert_eq!(edge.end("gps.pings"), 0, "nothing reached the topic");
    // Public routes need none.
    assert_eq!(
        edge.call(Method::GET, "/healthz", None, None, &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_what_a_caller_may_do() {
    let edge = edge();
    let ping = |driver: &str| json!({"driver_id": driver, "lat": 52.52, "lng": 13.40});
    let analyst = token(Role::Analyst, "ann");
    let hr = token(Role::Hr, "hal");
    let driver = token(Role::Driver, "d7");
    edge.post("/v1/gps", &analyst, ping("d7"))
        .await
        .error(StatusCode::FORBIDDEN, None);
    let other = edge
        .post("/v1/gps", &driver, json!([ping("d7"), ping("d8")]))
        .await;
    assert!(
        other
            .error(StatusCode::FORBIDDEN, Some("[1].driver_id"))
            .contains("only act as itself")
    );
    assert_eq!(
        edge.post("/v1/gps", &driver, ping("d7")).await.status,
        StatusCode::ACCEPTED
    );
    edge.post(
        "/v1/drivers/d8/status",
        &driver,
        json!({"status": "online", "vehicle_class": "economy"}),
    )
    .await
    .error(StatusCode::FORBIDDEN, Some("driver_id"));
    edge.post("/v1/trips/t1/accept", &driver, json!({"driver_id": "d8"}))
        .await
        .error(StatusCode::FORBIDDEN, Some("driver_id"));
    edge.post("/v1/trips", &driver, json!({}))
        .await
        .error(StatusCode::FORBIDDEN, None);
    edge.post("/v1/sql", &hr, json!({"sql": "SELECT 1"}))
        .await
        .error(StatusCode::FORBIDDEN, None);
    edge.get("/v1/exports/overtime", &analyst)
        .await
        .error(StatusCode::FORBIDDEN, None);
    edge.get("/v1/overtime/e1", &token(Role::App, "app"))
        .await
        .error(StatusCode::FORBIDDEN, None);
    edge.post(
        "/internal/v1/scan",
        &analyst,
        json!({"table": "trips", "partitions": [0]}),
    )
    .await
    .error(StatusCode::FORBIDDEN, None);
    assert_eq!(edge.end("gps.pings"), 1, "only the driver's own ping landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_write_nothing() {
    let edge = edge();
    let app = token(Role::App, "app");
    let hr = token(Role::Hr, "hal");
    let good = json!({"driver_id": "d1", "lat": 52.52, "lng": 13.40});
    let cases: Vec<(&str, Value, StatusCode, Option<&str>)> = vec![
        ("/v1/gps", json!("{not json"), StatusCode::BAD_REQUEST, Some("$")),
        ("/v1/gps", json!("42"), StatusCode::BAD_REQUEST, Some("$")),
        (
            "/v1/gps",
            json!({"driver_id": "d1", "lng": 13.4}),
            StatusCode::BAD_REQUEST,
            Some("lat"),
        ),
        (
            "/v1/gps",
            json!({"driver_id": "d1", "lat": 200.0, "lng": 13.4}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("lat"),
        ),
        (
            "/v1/gps",
            json!({"driver_id": "d 1", "lat": 52.0, "lng": 13.4}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("driver_id"),
        ),
        (
            "/v1/gps",
            json!({"driver_id": "d1", "lat": 52.0, "lng": 13.4, "ts": "2026-11-21 10:00"}),
            StatusCode::BAD_REQUEST,
            Some("ts"),
        ),
        (
            "/v1/gps",
            json!({"driver_id": "d1", "lat": 52.0, "lng": 13.4, "speed_kmh": -3.0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("speed_kmh"),
        ),
        (
            "/v1/gps",
            json!([good.clone(), good.clone(), {"driver_id": "d1", "lat": "52", "lng": 13.4}]),
            StatusCode::BAD_REQUEST,
            Some("[2].lat"),
        ),
        (
            "/v1/gps",
            json!({"pings": [good.clone(), {"driver_id": "d1", "lat": 52.0, "lng": 1000.0}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("pings[1].lng"),
        ),
        ("/v1/gps", json!([]), StatusCode::UNPROCESSABLE_ENTITY, Some("$")),
        (
            "/v1/drivers/d1/status",
            json!({"status": "asleep", "vehicle_class": "economy"}),
            StatusCode::BAD_REQUEST,
            Some("status"),
        ),
        (
            "/v1/drivers/d1/status",
            json!({"driver_id": "d2", "status": "online", "vehicle_class": "economy"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("driver_id"),
        ),
        (
            "/v1/trips",
            json!({"rider_id": "r1", "pickup": {"lat": 52.5, "lng": 13.4}, "dropoff": {"lat": 95.0, "lng": 13.4}, "vehicle_class": "economy"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("dropoff.lat"),
        ),
        (
            "/v1/trips",
            json!({"rider_id": "r1", "pickup": {"lat": 52.5, "lng": 13.4}, "vehicle_class": "economy"}),
            StatusCode::BAD_REQUEST,
            Some("dropoff"),
        ),
        (
            "/v1/trips",
            json!({"type": "cancel", "rider_id": "r1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("type"),
        ),
        (
            "/v1/trips/t1/cancel",
            json!({"by": "dispatcher"}),
            StatusCode::BAD_REQUEST,
            Some("by"),
        ),
        (
            "/v1/trips/t1/accept",
            json!({}),
            StatusCode::BAD_REQUEST,
            Some("driver_id"),
        ),
        (
            "/v1/wallets/rider:r1/top-ups",
            json!({"amount": "-5.00"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("amount"),
        ),
        (
            "/v1/wallets/rider:r1/top-ups",
            json!({"amount": 5.5}),
            StatusCode::BAD_REQUEST,
            Some("amount"),
        ),
        (
            "/v1/timesheets/punches",
            json!([{"employee_id": "e1", "kind": "clock_in"}, {"employee_id": "e1", "kind": "lunch"}]),
            StatusCode::BAD_REQUEST,
            Some("[1].kind"),
        ),
    ];
    for (uri, body, status, field) in cases {
        let answer = edge.post(uri, &app, body.clone()).await;
        assert_eq!(answer.status, status, "{uri} {body}: {}", answer.text());
        assert_eq!(
            answer.json()["field"].as_str(),
            field,
            "{uri} {body}: {}",
            answer.text()
        );
    }
    edge.post("/v1/trips/t1/fly", &app, json!({}))
        .await
        .error(StatusCode::NOT_FOUND, None);
    let big: Vec<Value> = (0..10_001).map(|_| good.clone()).collect();
    edge.post("/v1/gps", &app, Value::Array(big))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, None);
    // Reads validate their parameters too.
    edge.get("/v1/drivers/nearby?lat=91&lng=13", &app)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, Some("lat"));
    edge.get("/v1/drivers/nearby?lng=13", &app)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, Some("lat"));
    edge.get("/v1/drivers/nearby?lat=abc&lng=13", &app)
        .await
        .error(StatusCode::BAD_REQUEST, None);
    edge.get("/v1/drivers/nearby?lat=52&lng=13&limit=0", &app)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, Some("limit"));
    edge.get("/v1/exports/overtime?from=2026-11-10&to=2026-11-01", &hr)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, Some("from"));
    edge.get("/v1/exports/overtime?from=yesterday", &hr)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, Some("from"));
    edge.get("/v1/exports/overtime?format=xlsx", &hr)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, Some("format"));
    edge.get("/v1/nope", &app)
        .await
        .error(StatusCode::NOT_FOUND, None);
    for topic in [
        "gps.pings",
        "driver.status",
        "trip.commands",
        "wallet.commands",
        "timesheet.punches",
    ] {
        assert_eq!(edge.end(topic), 0, "{topic}: a refused request wrote nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_idempotency_key_is_a_no_op() {
    let edge = edge();
    let app = token(Role::App, "app");
    let body = json!({"amount": "20.00"});
    let first = edge
        .call(
            Method::POST,
            "/v1/wallets/rider:r1/top-ups",
            Some(&app),
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text());
    let again = edge
        .call(
            Method::POST,
            "/v1/wallets/rider:r1/top-ups",
            Some(&app),
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(edge.end("wallet.commands"), 1);
    // Another key is another command.
    let other = edge
        .call(
            Method::POST,
            "/v1/wallets/rider:r1/top-ups",
            Some(&app),
            Some(body),
            &[("idempotency-key", "k-2")],
        )
        .await;
    assert_eq!(other.json()["offset"], 1);
    assert_eq!(edge.end("wallet.commands"), 2);
    let wallet = edge
        .until("/v1/wallets/rider:r1", &app, |w| w["postings"] == 2)
        .await;
    assert_eq!(wallet["balance"], "40.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ride_through_the_api() {
    let edge = edge();
    let app = token(Role::App, "app");
    let d1 = token(Role::Driver, "d1");
    let d2 = token(Role::Driver, "d2");
    for (driver, t, lat) in [("d1", &d1, 52.5200), ("d2", &d2, 52.5300)] {
        let status = edge
            .post(
                &format!("/v1/drivers/{driver}/status"),
                t,
                json!({"status": "online", "vehicle_class": "economy"}),
            )
            .await;
        assert_eq!(status.status, StatusCode::ACCEPTED, "{}", status.text());
        assert_eq!(status.json()["topic"], "driver.status");
        assert_eq!(status.json()["key"], driver);
        let ping = edge
            .post(
                "/v1/gps",
                t,
                json!({"driver_id": driver, "lat": lat, "lng": 13.40}),
            )
            .await;
        assert_eq!(ping.status, StatusCode::ACCEPTED);
        assert_eq!(ping.json()["records"][0]["key"], driver);
    }
    let near = edge
        .until(
            "/v1/drivers/nearby?lat=52.5201&lng=13.4001&radius_km=5",
            &app,
            |b| b["drivers"].as_array().is_some_and(|d| d.len() == 2),
        )
        .await;
    assert_eq!(near["drivers"][0]["driver_id"], "d1", "nearest first: {near}");
    assert_eq!(near["drivers"][1]["driver_id"], "d2");
    let close = edge
        .get("/v1/drivers/nearby?lat=52.5201&lng=13.4001&radius_km=0.5", &app)
        .await
        .json();
    assert_eq!(close["drivers"].as_array().unwrap().len(), 1, "{close}");

    let requested = edge.post("/v1/trips", &app, json!({"rider_id": "r1", "pickup": {"lat": 52.5201, "lng": 13.4001}, "dropoff": {"lat": 52.5400, "lng": 13.4300}, "vehicle_class": "economy"})).await;
    assert_eq!(requested.status, StatusCode::ACCEPTED, "{}", requested.text());
    let trip_id = requested.json()["trip_id"].as_str().unwrap().to_string();
    let uri = format!("/v1/trips/{trip_id}");

    // Live updates over SSE, from the current state on.
    let sse = edge
        .router
        .clone()
        .oneshot(
            Request::get(format!("{uri}/events?access_token={app}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::OK);
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let mut sse = sse.into_body().into_data_stream();

    let offered = edge.until(&uri, &app, |t| t["status"] == "offered").await;
    assert_eq!(
        offered["driver_id"], "d1",
        "the nearest driver gets the offer: {offered}"
    );
    // Another driver may not read it; the offered one may.
    edge.get(&uri, &d2).await.error(StatusCode::FORBIDDEN, None);
    assert_eq!(edge.get(&uri, &d1).await.status, StatusCode::OK);
    for action in ["accept", "start", "complete"] {
        let answer = edge.post(&format!("{uri}/{action}"), &d1, json!({})).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{action}: {}", answer.text());
        let want = match action {
            "accept" => "matched",
            "start" => "started",
            _ => "completed",
        };
        edge.until(&uri, &app, |t| t["status"] == want).await;
    }
    let trip = edge.get(&uri, &app).await.json();
    assert_eq!(trip["last_event_id"], format!("{trip_id}:completed"), "{trip}");
    let fare: rust_decimal::Decimal = trip["fare"].as_str().unwrap().parse().unwrap();
    assert!(fare > rust_decimal::Decimal::ZERO, "{trip}");

    let mut seen = String::new();
    let started = Instant::now();
    while !seen.contains("\"completed\"") {
        assert!(started.elapsed() < Duration::from_secs(10), "SSE so far: {seen}");
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_secs(1), futures::StreamExt::next(&mut sse)).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    // The stream opened after the request was accepted: either before the trip's state was
    // folded (no state, then every event from `requested` on, even those written to the topic
    // before the stream opened) or after (the trip's state first, then every event after it).
    let kinds = ["requested", "offered", "matched", "started", "completed"];
    let from = if seen.starts_with("event: state") {
        let data = seen
            .lines()
            .nth(1)
            .and_then(|l| l.strip_prefix("data: "))
            .unwrap_or_default();
        let state: serde_json::Value = serde_json::from_str(data).expect("the state is JSON");
        assert_eq!(state["trip_id"], trip_id.as_str(), "{seen}");
        let status = state["status"].as_str().unwrap_or_default();
        kinds
            .iter()
            .position(|k| *k == status)
            .unwrap_or_else(|| panic!("a state before completion, {status}: {seen}"))
            + 1
    } else {
        assert!(!seen.contains("event: state"), "the state comes first: {seen}");
        0
    };
    for kind in &kinds[from..] {
        assert!(
            seen.contains(&format!("\"type\":\"{kind}\"")),
            "{kind} missing: {seen}"
        );
    }

    // The rider paid fare plus booking fee; the postings say so.
    let wallet = edge
        .until("/v1/wallets/rider:r1", &app, |w| {
            w["postings"].as_u64() >= Some(1)
        })
        .await;
    let balance: rust_decimal::Decimal = wallet["balance"].as_str().unwrap().parse().unwrap();
    assert!(balance < -fare, "{wallet}");
    assert_eq!(wallet["recent"][0]["trip_id"], trip_id.as_str());
    edge.get("/v1/wallets/rider:nobody", &app)
        .await
        .error(StatusCode::NOT_FOUND, None);
    edge.get("/v1/trips/nope", &app)
        .await
        .error(StatusCode::NOT_FOUND, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overtime_reads_and_exports() {
    let edge = edge();
    let hr = token(Role::Hr, "hal");
    let punches = json!({"punches": [
        {"employee_id": "E1", "kind": "clock_in", "ts": "2026-11-02T06:00:00+01:00"},
        {"employee_id": "E1", "kind": "clock_out", "ts": "2026-11-02T16:30:00+01:00"},
        {"employee_id": "E2", "kind": "clock_in", "ts": "2026-11-02T08:00:00+01:00"},
        {"employee_id": "E2", "kind": "clock_out", "ts": "2026-11-02T12:00:00+01:00"},
    ]});
    let answer = edge.post("/v1/timesheets/punches", &hr, punches).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    assert_eq!(answer.json()["records"].as_array().unwrap().len(), 4);
    let view = edge
        .until("/v1/overtime/E1?from=2026-11-01&to=2026-11-08", &hr, |v| {
            v["records"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["period"] == "day"))
        })
        .await;
    let day = view["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["period"] == "day")
        .unwrap();
    assert_eq!(day["worked_minutes"], 630, "{view}");
    assert_eq!(day["ot_150_minutes"], 120, "{view}");
    assert_eq!(day["period_start"], "2026-11-02");
    let csv = edge
        .get(
            "/v1/exports/overtime?from=2026-11-01&to=2026-11-08&format=csv",
            &hr,
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.text());
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("overtime-2026-11-01-2026-11-08.csv")
    );
    let text = csv.text();
    assert!(text.lines().any(|l| l.starts_with("E1,day,2026-11-02")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("E2,day,2026-11-02")), "{text}");
    let parquet = edge
        .get(
            "/v1/exports/overtime?from=2026-11-01&to=2026-11-08&format=parquet",
            &hr,
        )
        .await;
    assert_eq!(parquet.status, StatusCode::OK);
    assert_eq!(&parquet.body[..4], b"PAR1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_for_analysts() {
    let edge = edge();
    let analyst = token(Role::Analyst, "ann");
    let app = token(Role::App, "app");
    for i in 0..3 {
        let answer = edge
            .post(
                &format!("/v1/wallets/rider:r{i}/top-ups"),
                &app,
                json!({"amount": "10.50"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    edge.until("/v1/wallets/rider:r2", &app, |_| true).await;
    edge.until("/v1/wallets/rider:r0", &app, |_| true).await;
    edge.until("/v1/wallets/rider:r1", &app, |_| true).await;
    let json_rows = edge.post("/v1/sql", &analyst, json!({"sql": "SELECT account_id, balance FROM wallets WHERE account_id LIKE 'rider:%' ORDER BY account_id"})).await;
    assert_eq!(json_rows.status, StatusCode::OK, "{}", json_rows.text());
    assert_eq!(
        json_rows.json(),
        json!([
            {"account_id": "rider:r0", "balance": "10.50"},
            {"account_id": "rider:r1", "balance": "10.50"},
            {"account_id": "rider:r2", "balance": "10.50"},
        ])
    );
    assert_eq!(json_rows.headers["x-fleetstream-truncated"], "false");
    let csv = edge.post("/v1/sql", &analyst, json!({"sql": "SELECT SUM(balance) AS total, COUNT(*) AS accounts FROM wallets", "format": "csv"})).await;
    // Double entry: the top-ups' clearing account balances the riders'.
    assert_eq!(csv.text(), "total,accounts\n0.00,4\n");
    let cut = edge
        .post(
            "/v1/sql",
            &analyst,
            json!({"sql": "SELECT account_id FROM wallets", "max_rows": 2}),
        )
        .await;
    assert_eq!(cut.json().as_array().unwrap().len(), 2);
    assert_eq!(cut.headers["x-fleetstream-truncated"], "true");
    let arrow = edge.post("/v1/sql", &analyst, json!({"sql": "SELECT account_id FROM wallets WHERE account_id LIKE 'rider:%'", "format": "arrow"})).await;
    let batches: Vec<_> = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow.body), None)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    let bad = edge
        .post(
            "/v1/sql",
            &analyst,
            json!({"sql": "SELECT balanse\nFROM wallets"}),
        )
        .await;
    bad.error(StatusCode::BAD_REQUEST, Some("sql"));
    assert_eq!(bad.json()["position"], json!({"line": 1, "column": 8}));
    edge.post("/v1/sql", &analyst, json!({"sql": "DROP TABLE wallets"}))
        .await
        .error(StatusCode::FORBIDDEN, Some("sql"));
    edge.post("/v1/sql", &analyst, json!({"sql": "SELECT 1", "format": "xml"}))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, Some("format"));
    edge.post("/v1/sql", &analyst, json!({"query": "SELECT 1"}))
        .await
        .error(StatusCode::BAD_REQUEST, Some("query"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let edge = edge_with(Some(Limits {
        rate_per_second: 1,
        burst: 2,
        ..Limits::default()
    }));
    let app = token(Role::App, "app");
    let other = token(Role::App, "other");
    let ping = json!({"driver_id": "d1", "lat": 52.52, "lng": 13.40});
    assert_eq!(
        edge.post("/v1/gps", &app, ping.clone()).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        edge.post("/v1/gps", &app, ping.clone()).await.status,
        StatusCode::ACCEPTED
    );
    let limited = edge.post("/v1/gps", &app, ping.clone()).await;
    limited.error(StatusCode::TOO_MANY_REQUESTS, None);
    let retry: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Per client: another token still gets through; health checks are never limited.
    assert_eq!(
        edge.post("/v1/gps", &other, ping).await.status,
        StatusCode::ACCEPTED
    );
    for _ in 0..5 {
        assert_eq!(
            edge.call(Method::GET, "/healthz", None, None, &[]).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_metrics_health_and_dashboard() {
    let edge = edge();
    let doc = edge
        .call(Method::GET, "/openapi.json", None, None, &[])
        .await
        .json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/gps",
        "/v1/drivers/{id}/status",
        "/v1/trips",
        "/v1/trips/{id}/{action}",
        "/v1/wallets/{id}/top-ups",
        "/v1/timesheets/punches",
        "/v1/trips/{id}",
        "/v1/trips/{id}/events",
        "/v1/drivers/nearby",
        "/v1/wallets/{id}",
        "/v1/overtime/{employee}",
        "/v1/exports/overtime",
        "/v1/sql",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every command's body is described field by field, with the ranges the handlers check.
    for (path, body) in [
        ("/v1/gps", "GpsBody"),
        ("/v1/drivers/{id}/status", "DriverStatusBody"),
        ("/v1/trips", "TripRequestBody"),
        ("/v1/trips/{id}/{action}", "TripActionBody"),
        ("/v1/wallets/{id}/top-ups", "TopUpBody"),
        ("/v1/timesheets/punches", "PunchesBody"),
    ] {
        let schema = &paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(
            schema["$ref"],
            format!("#/components/schemas/{body}"),
            "{path}: {schema}"
        );
    }
    let ping = &doc["components"]["schemas"]["PingBody"];
    let required: Vec<&str> = ping["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, ["driver_id", "lat", "lng"], "{ping}");
    assert_eq!(ping["properties"]["lat"]["maximum"], 90.0, "{ping}");
    assert_eq!(
        doc["components"]["schemas"]["PunchKind"]["enum"],
        serde_json::json!(["clock_in", "clock_out", "break_start", "break_end"])
    );
    assert_eq!(
        edge.call(Method::GET, "/readyz", None, None, &[]).await.status,
        StatusCode::OK
    );
    let app = token(Role::App, "app");
    edge.post(
        "/v1/drivers/d1/status",
        &app,
        json!({"status": "online", "vehicle_class": "economy"}),
    )
    .await;
    edge.post(
        "/v1/gps",
        &app,
        json!({"driver_id": "d1", "lat": 52.52, "lng": 13.40}),
    )
    .await;
    let metrics = edge.call(Method::GET, "/metrics", None, None, &[]).await.text();
    assert!(metrics.contains("fleetstream_http_requests_total"), "{metrics}");
    assert!(
        metrics.contains("fleetstream_api_records_in_total{topic=\"gps.pings\"}"),
        "{metrics}"
    );
    let page = edge.call(Method::GET, "/", None, None, &[]).await;
    assert!(page.text().contains("/assets/app.js"));
    let js = edge.call(Method::GET, "/assets/app.js", None, None, &[]).await;
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let cells = edge
        .until("/v1/dashboard/cells?res=7", &app, |c| {
            c["cells"].as_array().is_some_and(|c| !c.is_empty())
        })
        .await;
    assert!(
        cells["cells"][0]["boundary"].as_array().unwrap().len() >= 5,
        "{cells}"
    );
    let _ = &edge.api;
}
