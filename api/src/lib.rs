//! The edge API (axum): commands become records on topics, reads go to the state stores (through
//! the SQL engine, which reads every partition — local ones at one cut, the others from their
//! owners), analysts run SQL, HR pulls exports, dispatchers watch the dashboard.
//!
//! - [`auth`]: RS256 bearer tokens and roles; every route but health, metrics, the OpenAPI
//!   document and the dashboard's static files needs one.
//! - [`commands`]: `POST` routes; validated like the stream validates, then appended with the
//!   record's key, partition and offset in the 202 answer; `Idempotency-Key` makes a retry a no-op.
//! - [`reads`]: interactive queries, Server-Sent Events, exports and SQL.
//! - [`remote`]: how instances read each other's store partitions.
//!
//! Errors are JSON `{"error": ..., "code": ..., "field": ...}`; a bad request never reaches a
//! topic.

pub mod auth;
pub mod bodies;
pub mod commands;
pub mod dashboard;
pub mod openapi;
pub mod reads;
pub mod remote;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fleetstream_queries::{QueryEngine, StoreSource};
use fleetstream_topology::log::{Log, Producer};
use fleetstream_topology::runtime::Members;
use fleetstream_topology::{ProducerRecord, partition_for};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tokio::sync::broadcast;

pub use auth::{Claims, Keys, Role};

/// Limits of the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Requests per second per client (token subject, or address without a token).
    pub rate_per_second: u32,
    /// Requests a client may send at once above the rate.
    pub burst: u32,
    /// Records in one batch command.
    pub max_batch: usize,
    /// Bytes in one request body.
    pub max_body: usize,
    /// How long an `Idempotency-Key` answer is kept.
    pub idempotency_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate_per_second: 1_000,
            burst: 2_000,
            max_batch: 10_000,
            max_body: 16 * 1024 * 1024,
            idempotency_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Everything the API needs from the running instance.
pub struct ApiParts {
    pub log: Arc<dyn Log>,
    /// Prefix of every topic name (`topic_prefix`).
    pub topic_prefix: String,
    pub keys: Keys,
    /// The SQL engine, over every partition of the stores (remote ones through [`remote`]).
    pub queries: QueryEngine,
    /// This instance's stores, for the internal scan other instances call.
    pub stores: Option<StoreSource>,
    pub members: Option<Arc<Members>>,
    pub limits: Limits,
    /// Whether the engine runs (readiness).
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// A request's shared state.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    parts: ApiParts,
    producer: Mutex<Option<Box<dyn Producer>>>,
    partitions: Mutex<HashMap<String, u32>>,
    limiter: DefaultKeyedRateLimiter<String>,
    idempotency: Mutex<HashMap<(String, String), Remembered>>,
    trips: reads::TripFeed,
    prometheus: PrometheusHandle,
}

#[derive(Clone)]
struct Remembered {
    at: Instant,
    status: StatusCode,
    body: bytes::Bytes,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("limits", &self.inner.parts.limits)
            .finish()
    }
}

/// The process's Prometheus recorder (the runtime and the sinks record through the `metrics`
/// facade into it).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed already (embedding); then ours sees only the
            // API's own metrics.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

impl Api {
    pub fn new(parts: ApiParts) -> Api {
        let rate = NonZeroU32::new(parts.limits.rate_per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(parts.limits.burst.max(1)).expect("at least 1");
        Api {
            inner: Arc::new(Inner {
                producer: Mutex::new(None),
                partitions: Mutex::new(HashMap::new()),
                limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
                idempotency: Mutex::new(HashMap::new()),
                trips: reads::TripFeed::new(),
                prometheus: prometheus(),
                parts,
            }),
        }
    }

    pub fn parts(&self) -> &ApiParts {
        &self.inner.parts
    }

    /// The full topic name.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.inner.parts.topic_prefix)
    }

    /// Appends records (topic without prefix, key, JSON value, event time) as one commit, and
    /// returns where each landed. Runs on a blocking thread: the log's calls block.
    pub async fn append(&self, records: Vec<Outgoing>) -> Result<Vec<Appended>, ApiError> {
        let api = self.clone();
        tokio::task::spawn_blocking(move || api.append_blocking(records))
            .await
            .map_err(|e| ApiError::internal(format!("append stopped: {e}")))?
    }

    fn append_blocking(&self, records: Vec<Outgoing>) -> Result<Vec<Appended>, ApiError> {
        let inner = &self.inner;
        let unavailable = |e: fleetstream_topology::LogError| {
            ApiError::unavailable(format!("the log refused the write: {e}"))
        };
        // The batch's topics (usually one), each named, looked up and counted once.
        let mut topics: Vec<BatchTopic> = Vec::new();
        let mut placed = Vec::with_capacity(records.len());
        for r in &records {
            let at = match topics.iter().position(|t| t.name == r.topic) {
                Some(at) => at,
                None => {
                    let full = self.topic(r.topic);
                    let partitions = {
                        let mut cache = inner.partitions.lock().expect("partition cache");
                        match cache.get(&full) {
                            Some(n) => *n,
                            None => {
                                let n = inner.parts.log.partitions(&full).map_err(unavailable)?;
                                cache.insert(full.clone(), n);
                                n
                            }
                        }
                    };
                    topics.push(BatchTopic {
                        name: r.topic,
                        full: full.into(),
                        partitions,
                        records: 0,
                    });
                    topics.len() - 1
                }
            };
            let topic = &mut topics[at];
            topic.records += 1;
            placed.push((at, partition_for(r.key.as_bytes(), topic.partitions)));
        }
        let mut guard = inner.producer.lock().expect("producer");
        if guard.is_none() {
            *guard = Some(inner.parts.log.producer(None, None).map_err(unavailable)?);
        }
        let producer = guard.as_mut().expect("just made");
        let sent = records.iter().zip(&placed).try_for_each(|(r, (at, partition))| {
            producer.send(ProducerRecord {
                topic: topics[*at].full.clone(),
                partition: *partition,
                ts: r.ts,
                key: bytes::Bytes::from(r.key.clone()),
                value: Some(r.value.clone()),
            })
        });
        let offsets = match sent.and_then(|()| producer.commit(None)) {
            Ok(offsets) => offsets,
            Err(e) => {
                let _ = producer.abort();
                // A producer that failed may be fenced or broken: the next request makes a new one.
                *guard = None;
                return Err(unavailable(e));
            }
        };
        drop(guard);
        for topic in &topics {
            metrics::counter!("fleetstream_api_records_in_total", "topic" => topic.name)
                .increment(topic.records);
        }
        let mut out = Vec::with_capacity(records.len());
        for ((r, (_, partition)), offset) in records.iter().zip(placed).zip(offsets) {
            out.push(Appended {
                topic: r.topic.to_string(),
                key: r.key.clone(),
                partition,
                offset,
            });
        }
        Ok(out)
    }

    /// Trip updates as they are written (the `trip.events` topic, tailed by [`reads::tail_trip_events`]).
    pub fn trip_updates(&self) -> broadcast::Receiver<reads::TripUpdate> {
        self.inner.trips.subscribe()
    }

    /// Trip `id`'s updates from now on, and its recent ones before them.
    pub(crate) fn follow_trip(
        &self,
        id: &str,
    ) -> (broadcast::Receiver<reads::TripUpdate>, Vec<reads::TripUpdate>) {
        self.inner.trips.follow(id)
    }

    pub(crate) fn publish(&self, update: reads::TripUpdate) {
        self.inner.trips.publish(update);
    }

    /// An answer already given to this client for this idempotency key.
    fn remembered(&self, principal: &str, key: &str) -> Option<Remembered> {
        let ttl = self.inner.parts.limits.idempotency_ttl;
        let mut map = self.inner.idempotency.lock().expect("idempotency");
        let found = map.get(&(principal.to_string(), key.to_string())).cloned();
        match found {
            Some(r) if r.at.elapsed() < ttl => Some(r),
            Some(_) => {
                map.remove(&(principal.to_string(), key.to_string()));
                None
            }
            None => None,
        }
    }

    fn remember(&self, principal: &str, key: &str, status: StatusCode, body: bytes::Bytes) {
        let ttl = self.inner.parts.limits.idempotency_ttl;
        let mut map = self.inner.idempotency.lock().expect("idempotency");
        if map.len() >= 100_000 {
            map.retain(|_, r| r.at.elapsed() < ttl);
        }
        map.insert(
            (principal.to_string(), key.to_string()),
            Remembered {
                at: Instant::now(),
                status,
                body,
            },
        );
    }
}

/// A record to append.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Topic name without the prefix (a `fleetstream_schemas::topics` constant).
    pub topic: &'static str,
    pub key: String,
    pub value: bytes::Bytes,
    /// Event time, ms.
    pub ts: i64,
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Appended {
    pub topic: String,
    pub key: String,
    pub partition: u32,
    pub offset: u64,
}

/// A topic of a batch being appended.
struct BatchTopic {
    /// Without the prefix, as the records name it.
    name: &'static str,
    /// With the prefix, shared by the batch's records.
    full: Arc<str>,
    partitions: u32,
    records: u64,
}

/// An error answer: `{"error": message, "code": code, "field": field}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
    pub position: Option<fleetstream_queries::Position>,
}

/// The JSON body of every error.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// What went wrong, for programs: `invalid`, `unauthorized`, `forbidden`, `not_found`,
    /// `rate_limited`, `unavailable`, `timeout`, `internal`, `too_large`.
    pub code: String,
    /// The request field at fault, as a JSON path (`pings[3].lat`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Where in the SQL, for SQL errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<SqlPosition>,
}

/// A place in an SQL text (1-based).
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SqlPosition {
    pub line: u64,
    pub column: u64,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            position: None,
        }
    }

    /// 422: a value breaks a rule; names the field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }
    }

    /// 400: the request cannot be read (not JSON, wrong type, missing field).
    pub fn malformed(field: Option<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            field,
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// From a schema error: malformed JSON is 400, a broken rule 422; both name the field.
    pub fn schema(prefix: &str, e: fleetstream_schemas::SchemaError) -> ApiError {
        let join = |field: &str| {
            if prefix.is_empty() {
                field.to_string()
            } else if field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{field}")
            }
        };
        match e {
            fleetstream_schemas::SchemaError::Malformed { field, message } => {
                let field = join(&field);
                ApiError::malformed(Some(field.clone()), format!("{field}: {message}"))
            }
            fleetstream_schemas::SchemaError::Invalid { field, message } => {
                let field = join(&field);
                ApiError::invalid(field.clone(), format!("{field}: {message}"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, error = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: self.message,
            code: self.code.to_string(),
            field: self.field,
            position: self.position.map(|p| SqlPosition {
                line: p.line,
                column: p.column,
            }),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The caller, from a verified bearer token (`Authorization: Bearer ...`, or `access_token=` in
/// the query for EventSource, which cannot send headers).
#[derive(Debug, Clone)]
pub struct Principal {
    pub sub: String,
    pub role: Role,
}

impl Principal {
    /// Refuses unless the caller has one of `roles` (admin always has).
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            let wanted: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(format!(
                "role {} may not do this (needs {})",
                self.role.as_str(),
                wanted.join(" or ")
            )))
        }
    }

    /// For role `driver`: refuses acting as another driver.
    pub fn require_self(&self, driver_id: &str, field: &str) -> Result<(), ApiError> {
        if self.role == Role::Driver && self.sub != driver_id {
            return Err(ApiError {
                field: Some(field.to_string()),
                ..ApiError::forbidden(format!(
                    "driver {} may only act as itself, not {driver_id}",
                    self.sub
                ))
            });
        }
        Ok(())
    }

    /// The client's name for rate limits and idempotency keys.
    pub fn client(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.sub)
    }
}

/// What the auth layer found.
#[derive(Debug, Clone)]
enum Authenticated {
    Yes(Principal),
    No(String),
}

impl FromRequestParts<Api> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &Api) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Authenticated>() {
            Some(Authenticated::Yes(p)) => Ok(p.clone()),
            Some(Authenticated::No(why)) => Err(ApiError::unauthorized(why.clone())),
            None => Err(ApiError::unauthorized("no bearer token")),
        }
    }
}

fn bearer(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
            return Some(token.trim().to_string());
        }
        return None;
    }
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token=").map(|t| t.to_string()))
}

/// Verifies the token (if any), then applies the caller's rate limit.
async fn authenticate(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    let token = bearer(request.headers(), request.uri().query());
    let authenticated = match token {
        None if request.headers().contains_key(header::AUTHORIZATION) => {
            Authenticated::No("the Authorization header is not `Bearer <token>`".into())
        }
        None => Authenticated::No("no bearer token (Authorization: Bearer <token>)".into()),
        Some(token) => match api.inner.parts.keys.verify(&token) {
            Ok(claims) => Authenticated::Yes(Principal {
                sub: claims.sub,
                role: claims.role,
            }),
            Err(e) => Authenticated::No(format!("invalid token: {e}")),
        },
    };
    let client = match &authenticated {
        Authenticated::Yes(p) => p.client(),
        Authenticated::No(_) => "anonymous".to_string(),
    };
    let limited = !matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics");
    if limited && let Err(not_until) = api.inner.limiter.check_key(&client) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        metrics::counter!("fleetstream_api_rate_limited_total").increment(1);
        return ApiError {
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many requests from {client}; retry in {} ms",
                    wait.as_millis().max(1)
                ),
            )
        }
        .into_response();
    }
    request.extensions_mut().insert(authenticated);
    next.run(request).await
}

/// Counts requests and their latency per route.
async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("fleetstream_http_requests_total", "method" => method, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("fleetstream_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Runs a command handler once per idempotency key: a retry with the same key (and client)
/// gets the first answer again, and appends nothing.
pub(crate) async fn idempotent<F, B>(
    api: &Api,
    principal: &Principal,
    headers: &HeaderMap,
    work: F,
) -> Response
where
    F: Future<Output = Result<(StatusCode, B), ApiError>>,
    B: serde::Serialize,
{
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= 255 => Some(k.to_string()),
        Some(_) => {
            return ApiError {
                field: Some("Idempotency-Key".into()),
                ..ApiError::malformed(None, "Idempotency-Key must be 1..=255 visible ASCII characters")
            }
            .into_response();
        }
    };
    let client = principal.client();
    if let Some(key) = &key
        && let Some(r) = api.remembered(&client, key)
    {
        let mut response = (r.status, [(header::CONTENT_TYPE, "application/json")], r.body).into_response();
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return response;
    }
    match work.await {
        Ok((status, body)) => {
            let body = bytes::Bytes::from(serde_json::to_vec(&body).expect("JSON"));
            if let Some(key) = &key {
                api.remember(&client, key, status, body.clone());
            }
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(api): State<Api>) -> Response {
    if (api.inner.parts.ready)() {
        (StatusCode::OK, "ready").into_response()
    } else {
        ApiError::unavailable("the engine is not running").into_response()
    }
}

async fn metrics_text(State(api): State<Api>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.inner.prometheus.render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route (see /openapi.json)")
}

/// The whole router.
pub fn router(api: Api) -> Router {
    let max_body = api.inner.parts.limits.max_body;
    Router::new()
        .route("/v1/gps", post(commands::gps))
        .route("/v1/drivers/{id}/status", post(commands::driver_status))
        .route("/v1/trips", post(commands::request_trip))
        .route("/v1/trips/{id}/{action}", post(commands::trip_action))
        .route("/v1/wallets/{id}/top-ups", post(commands::top_up))
        .route("/v1/timesheets/punches", post(commands::punches))
        .route("/v1/trips/{id}", get(reads::trip))
        .route("/v1/trips/{id}/events", get(reads::trip_events))
        .route("/v1/drivers/nearby", get(reads::nearby))
        .route("/v1/wallets/{id}", get(reads::wallet))
        .route("/v1/overtime/{employee}", get(reads::overtime))
        .route("/v1/exports/overtime", get(reads::export_overtime))
        .route("/v1/sql", post(reads::sql))
        .route("/v1/dashboard/cells", get(dashboard::cells))
        .route("/v1/dashboard/events", get(dashboard::events))
        .route("/internal/v1/scan", post(remote::scan))
        .route("/openapi.json", get(openapi::document))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(api.clone(), authenticate))
        .route_layer(middleware::from_fn(observe))
        .with_state(api)
}

/// Serves the router on `listener` until `shutdown` resolves; tails `trip.events` for SSE.
pub async fn serve(
    api: Api,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tail = reads::tail_trip_events(api.clone());
    let result = axum::serve(
        listener,
        router(api).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    tail.stop();
    result
}
