//! Reads: interactive queries on the state stores, live trip updates (SSE), exports and SQL.
//!
//! Interactive queries run through the SQL engine with the key pushed into the store: a lookup
//! reads the key's partitions only — this instance's directly, another instance's through that
//! owner's internal scan endpoint ([`crate::remote`]) — so any instance answers any query.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::NaiveDate;
use fleetstream_queries::QueryError;
use fleetstream_queries::format::{Format, decimals_as_strings};
use fleetstream_schemas::{time, topics};
use fleetstream_sinks::export::{ExportFormat, latest_records, write_overtime};
use fleetstream_topology::log::consumer_at_end;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::{Api, ApiError, Principal, Role};

/// One record of `trip.events`, as the SSE stream sends it.
#[derive(Debug, Clone)]
pub struct TripUpdate {
    pub trip_id: String,
    pub event_id: String,
    /// The event's `ts`, ms since the epoch (`None` when it has none that parses).
    pub ts: Option<i64>,
    pub event: Arc<Value>,
}

impl TripUpdate {
    /// An update from a `trip.events` value.
    pub fn new(event: Value) -> TripUpdate {
        let text = |field: &str| {
            event
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        TripUpdate {
            trip_id: text("trip_id"),
            event_id: text("event_id"),
            ts: event.get("ts").and_then(Value::as_str).and_then(millis),
            event: Arc::new(event),
        }
    }
}

/// An RFC 3339 instant (events and query rows carry their offset) as ms since the epoch.
fn millis(text: &str) -> Option<i64> {
    time::parse(text).ok().map(|t| time::to_millis(&t))
}

/// Updates kept for subscribers that arrive late: at most this many, for at most this long.
const RECENT_UPDATES: usize = 16_384;
const RECENT_FOR: Duration = Duration::from_secs(60);

/// The trip updates the tail reads: a broadcast to the live subscribers, and the last minute of
/// updates. A trip's state is folded from `trip.events` one step downstream of it, so the state a
/// subscriber reads may lag the topic; the recent updates fill that gap.
pub(crate) struct TripFeed {
    sender: broadcast::Sender<TripUpdate>,
    recent: Mutex<VecDeque<(Instant, TripUpdate)>>,
}

impl TripFeed {
    pub(crate) fn new() -> TripFeed {
        TripFeed {
            sender: broadcast::channel(4096).0,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Every update from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<TripUpdate> {
        self.sender.subscribe()
    }

    /// Every update from now on, and the recent updates of `trip_id` before them: taken under
    /// the lock `publish` sends under, so each update is in exactly one of the two.
    pub(crate) fn follow(&self, trip_id: &str) -> (broadcast::Receiver<TripUpdate>, Vec<TripUpdate>) {
        let recent = self.recent.lock().expect("trip feed");
        let receiver = self.sender.subscribe();
        let earlier = recent
            .iter()
            .filter(|(_, u)| u.trip_id == trip_id)
            .map(|(_, u)| u.clone())
            .collect();
        (receiver, earlier)
    }

    pub(crate) fn publish(&self, update: TripUpdate) {
        let now = Instant::now();
        let mut recent = self.recent.lock().expect("trip feed");
        while recent
            .front()
            .is_some_and(|(at, _)| recent.len() >= RECENT_UPDATES || now.duration_since(*at) > RECENT_FOR)
        {
            recent.pop_front();
        }
        recent.push_back((now, update.clone()));
        let _ = self.sender.send(update);
    }
}

/// What a subscriber that read a trip's state (`last_event_id`, `updated_at`) still has to see.
#[derive(Debug)]
struct Resume {
    /// Recent updates the state does not reflect, to send after it.
    replay: Vec<TripUpdate>,
    /// Live updates the state may already reflect: the state's last event came after every
    /// recent update read (the tail is behind the step that folds the state), so live updates
    /// up to it are skipped. `None` once it, or a later update, has passed.
    skip_through: Option<(String, i64)>,
}

impl Resume {
    /// `state`: the trip's row, if the trip has one yet. Without one, every recent update is
    /// news. With one, the updates after its last event are; when that event is not among the
    /// recent ones, those at or after its time are (a tie may repeat an event under the same id,
    /// which a client drops; it never loses one).
    fn after(recent: Vec<TripUpdate>, state: Option<&Map<String, Value>>) -> Resume {
        let Some(state) = state else {
            return Resume {
                replay: recent,
                skip_through: None,
            };
        };
        let last = state.get("last_event_id").and_then(Value::as_str);
        if let Some(at) = last.and_then(|last| recent.iter().position(|u| u.event_id == last)) {
            return Resume {
                replay: recent.into_iter().skip(at + 1).collect(),
                skip_through: None,
            };
        }
        let Some(updated_at) = state.get("updated_at").and_then(Value::as_str).and_then(millis) else {
            return Resume {
                replay: recent,
                skip_through: None,
            };
        };
        Resume {
            replay: recent
                .into_iter()
                .filter(|u| u.ts.is_none_or(|ts| ts >= updated_at))
                .collect(),
            skip_through: last.map(|last| (last.to_string(), updated_at)),
        }
    }

    /// Whether a live update is news to the subscriber.
    fn news(&mut self, update: &TripUpdate) -> bool {
        let Some((last, updated_at)) = &self.skip_through else {
            return true;
        };
        if update.event_id == *last {
            self.skip_through = None;
            return false;
        }
        match update.ts {
            Some(ts) if ts < *updated_at => false,
            Some(ts) if ts == *updated_at => true,
            // Later than the state: its last event is behind (or was never read again).
            _ => {
                self.skip_through = None;
                true
            }
        }
    }
}

/// Rows of a query as JSON objects (decimals as strings).
pub(crate) async fn rows(api: &Api, sql: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    let output = api.parts().queries.query(sql).await.map_err(query_error)?;
    let mut out = Vec::new();
    for batch in &output.batches {
        let batch = decimals_as_strings(batch).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut buf = Vec::new();
        {
            let mut writer = arrow::json::ArrayWriter::new(&mut buf);
            writer
                .write(&batch)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            writer.finish().map_err(|e| ApiError::internal(e.to_string()))?;
        }
        if buf.is_empty() {
            continue;
        }
        let values: Vec<Map<String, Value>> =
            serde_json::from_slice(&buf).map_err(|e| ApiError::internal(e.to_string()))?;
        out.extend(values);
    }
    Ok(out)
}

pub(crate) fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::Invalid { message, position } => ApiError {
            position,
            field: Some("sql".into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
        },
        QueryError::Forbidden { message } => ApiError {
            field: Some("sql".into()),
            ..ApiError::forbidden(message)
        },
        QueryError::Timeout(limit) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("the query ran longer than {limit:?}"),
        ),
        QueryError::Execution(message)
            if message.contains("no live owner") || message.contains("unreachable") =>
        {
            ApiError::unavailable(message)
        }
        QueryError::Execution(message) | QueryError::Setup(message) => ApiError::internal(message),
    }
}

/// An id from the path or query, checked like the schemas check ids, as an SQL literal.
pub(crate) fn literal(field: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() || value.len() > 128 || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::invalid(
            field,
            format!("{field}: must be 1..=128 characters without whitespace"),
        ));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// `GET /v1/trips/{id}`: the trip's current state.
#[utoipa::path(get, path = "/v1/trips/{id}", tag = "queries",
    params(("id" = String, Path, description = "Trip id")),
    responses((status = 200, description = "The trip: status, parties, pickup/drop-off, surge, fare (decimal string), offers, timestamps", body = serde_json::Value), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn trip(
    State(api): State<Api>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    principal.require(&[Role::App, Role::Driver, Role::Analyst])?;
    let trip = find_trip(&api, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no trip {id:?}")))?;
    if principal.role == Role::Driver
        && trip.get("driver_id").and_then(Value::as_str) != Some(principal.sub.as_str())
    {
        return Err(ApiError::forbidden(format!(
            "trip {id} is not driver {}'s",
            principal.sub
        )));
    }
    Ok(Json(trip))
}

async fn find_trip(api: &Api, id: &str) -> Result<Option<Map<String, Value>>, ApiError> {
    let sql = format!("SELECT * FROM trips WHERE trip_id = {}", literal("id", id)?);
    Ok(rows(api, &sql).await?.into_iter().next())
}

/// Query of `GET /v1/drivers/nearby`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct NearbyQuery {
    /// Latitude of the point, degrees.
    pub lat: Option<f64>,
    /// Longitude of the point, degrees.
    pub lng: Option<f64>,
    /// Search radius, km (default 3, at most 50).
    pub radius_km: Option<f64>,
    /// Drivers to return at most (default 10, at most 200).
    pub limit: Option<usize>,
    /// Only this vehicle class.
    pub vehicle_class: Option<String>,
}

/// A driver near a point.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Nearby {
    pub drivers: Vec<Map<String, Value>>,
}

fn number(
    field: &str,
    value: Option<f64>,
    default: Option<f64>,
    range: std::ops::RangeInclusive<f64>,
) -> Result<f64, ApiError> {
    let v = value
        .or(default)
        .ok_or_else(|| ApiError::invalid(field, format!("{field}: required")))?;
    if !v.is_finite() || !range.contains(&v) {
        return Err(ApiError::invalid(
            field,
            format!("{field}: {v} is outside {}..={}", range.start(), range.end()),
        ));
    }
    Ok(v)
}

/// Query-string errors name the parameter.
pub(crate) fn parse_query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri).map(|q| q.0).map_err(|e| {
        let text = e.body_text();
        let field = text.split('`').nth(1).map(str::to_string);
        ApiError::malformed(field, format!("query string: {text}"))
    })
}

/// `GET /v1/drivers/nearby?lat&lng&radius_km`: online drivers within the radius, nearest first.
#[utoipa::path(get, path = "/v1/drivers/nearby", tag = "queries", params(NearbyQuery),
    responses((status = 200, body = Nearby), (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody), (status = 422, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn nearby(
    State(api): State<Api>,
    principal: Principal,
    uri: axum::http::Uri,
) -> Result<Json<Nearby>, ApiError> {
    principal.require(&[Role::App, Role::Analyst])?;
    let q: NearbyQuery = parse_query(&uri)?;
    let lat = number("lat", q.lat, None, -90.0..=90.0)?;
    let lng = number("lng", q.lng, None, -180.0..=180.0)?;
    let radius = number("radius_km", q.radius_km, Some(3.0), 0.0..=50.0)?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit: {limit} is outside 1..=200"),
        ));
    }
    let class = match &q.vehicle_class {
        Some(c) => format!(" AND vehicle_class = {}", literal("vehicle_class", c)?),
        None => String::new(),
    };
    let sql = format!(
        "SELECT driver_id, lat, lng, cell, vehicle_class, available, trip_id, position_ts, \
         ROUND(haversine_km(lat, lng, {lat}, {lng}), 4) AS distance_km FROM drivers \
         WHERE online AND lat IS NOT NULL AND haversine_km(lat, lng, {lat}, {lng}) <= {radius}{class} \
         ORDER BY distance_km, driver_id LIMIT {limit}"
    );
    Ok(Json(Nearby {
        drivers: rows(&api, &sql).await?,
    }))
}

/// Query of `GET /v1/wallets/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WalletQuery {
    /// Postings to include, newest first (default 20, at most 500).
    pub postings: Option<usize>,
}

/// A wallet: its balance and recent postings.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WalletView {
    pub account_id: String,
    /// Decimal string.
    pub balance: String,
    /// Postings ever made.
    pub postings: u64,
    pub updated_at: Option<String>,
    pub recent: Vec<Map<String, Value>>,
}

/// `GET /v1/wallets/{id}`: balance and recent postings.
#[utoipa::path(get, path = "/v1/wallets/{id}", tag = "queries",
    params(("id" = String, Path, description = "Account id, e.g. rider:r1"), WalletQuery),
    responses((status = 200, body = WalletView), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn wallet(
    State(api): State<Api>,
    principal: Principal,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Json<WalletView>, ApiError> {
    principal.require(&[Role::App, Role::Analyst])?;
    let q: WalletQuery = parse_query(&uri)?;
    let n = q.postings.unwrap_or(20);
    if n > 500 {
        return Err(ApiError::invalid(
            "postings",
            format!("postings: {n} is more than 500"),
        ));
    }
    let key = literal("id", &id)?;
    let wallet = rows(
        &api,
        &format!("SELECT account_id, balance, postings, updated_at FROM wallets WHERE account_id = {key}"),
    )
    .await?;
    let Some(wallet) = wallet.into_iter().next() else {
        return Err(ApiError::not_found(format!("no wallet {id:?}")));
    };
    let recent = if n == 0 {
        Vec::new()
    } else {
        rows(&api, &format!("SELECT entry_id, txn_id, amount, kind, trip_id, ts FROM ledger WHERE account_id = {key} ORDER BY ts DESC, entry_id LIMIT {n}")).await?
    };
    Ok(Json(WalletView {
        account_id: id,
        balance: wallet
            .get("balance")
            .and_then(Value::as_str)
            .unwrap_or("0.00")
            .to_string(),
        postings: wallet.get("postings").and_then(Value::as_u64).unwrap_or(0),
        updated_at: wallet
            .get("updated_at")
            .and_then(Value::as_str)
            .map(str::to_string),
        recent,
    }))
}

/// A date range in the query string (`YYYY-MM-DD`, both inclusive).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Range {
    /// First day (default: 31 days before `to`).
    pub from: Option<String>,
    /// Last day (default: today, UTC).
    pub to: Option<String>,
    /// Exports only: csv (default) or parquet.
    pub format: Option<String>,
}

fn date(field: &str, value: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    value
        .map(|v| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map_err(|_| ApiError::invalid(field, format!("{field}: {v:?} is not a date (YYYY-MM-DD)")))
        })
        .transpose()
}

fn range(r: &Range) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let to = date("to", r.to.as_deref())?.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let from = date("from", r.from.as_deref())?.unwrap_or(to - chrono::Days::new(31));
    if from > to {
        return Err(ApiError::invalid(
            "from",
            format!("from: {from} is after to ({to})"),
        ));
    }
    if (to - from).num_days() > 366 {
        return Err(ApiError::invalid("to", "to: the range is longer than 366 days"));
    }
    Ok((from, to))
}

/// An employee's overtime records.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OvertimeView {
    pub employee_id: String,
    pub from: String,
    pub to: String,
    /// The latest version of each day and week starting in the range.
    pub records: Vec<Map<String, Value>>,
}

/// `GET /v1/overtime/{employee}?from&to`.
#[utoipa::path(get, path = "/v1/overtime/{employee}", tag = "queries",
    params(("employee" = String, Path, description = "Employee id"), Range),
    responses((status = 200, body = OvertimeView), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 422, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn overtime(
    State(api): State<Api>,
    principal: Principal,
    Path(employee): Path<String>,
    uri: axum::http::Uri,
) -> Result<Json<OvertimeView>, ApiError> {
    principal.require(&[Role::Hr, Role::Analyst])?;
    let r: Range = parse_query(&uri)?;
    let (from, to) = range(&r)?;
    let sql = format!(
        "SELECT * FROM overtime WHERE employee_id = {} AND period_start BETWEEN DATE '{from}' AND DATE '{to}' ORDER BY period, period_start",
        literal("employee", &employee)?
    );
    Ok(Json(OvertimeView {
        employee_id: employee,
        from: from.to_string(),
        to: to.to_string(),
        records: rows(&api, &sql).await?,
    }))
}

/// `GET /v1/exports/overtime?from&to&format=csv|parquet`: every employee's overtime for HR and
/// accounting, as a download.
#[utoipa::path(get, path = "/v1/exports/overtime", tag = "exports", params(Range),
    responses((status = 200, description = "CSV (text/csv) or Parquet (application/vnd.apache.parquet)"), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 422, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn export_overtime(
    State(api): State<Api>,
    principal: Principal,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Hr])?;
    let r: Range = parse_query(&uri)?;
    let (from, to) = range(&r)?;
    let format = match r.format.as_deref().unwrap_or("csv") {
        "csv" => ExportFormat::Csv,
        "parquet" => ExportFormat::Parquet,
        other => {
            return Err(ApiError::invalid(
                "format",
                format!("format: {other:?} is not csv or parquet"),
            ));
        }
    };
    let log = api.parts().log.clone();
    let topic = api.topic(topics::OVERTIME_RECORDS);
    // The latest version of each record needs the whole range read first; the file is then
    // written straight into the response, chunk by chunk, as it is encoded.
    let records = tokio::task::spawn_blocking(move || latest_records(&*log, &topic, from, to))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter::new(tx);
        let written = write_overtime(&records, format, &mut out)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            tracing::warn!(error = %e, "overtime export stopped");
            // The client sees the body end in an error, never a short file that looks whole.
            let _ = out.tx.blocking_send(Err(e));
        }
    });
    let (content_type, ext) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Parquet => ("application/vnd.apache.parquet", "parquet"),
    };
    let disposition = format!("attachment; filename=\"overtime-{from}-{to}.{ext}\"");
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}

/// A writer whose output goes to a response body in chunks of about 64 KiB.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    const CHUNK: usize = 64 * 1024;

    fn new(tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>) -> Self {
        ChunkWriter {
            tx,
            buffer: Vec::with_capacity(Self::CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(Self::CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The body of `POST /v1/sql`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One read-only statement.
    pub sql: String,
    /// json (default: an array of row objects, decimals as strings), csv, table, or arrow (an
    /// Arrow IPC stream).
    #[serde(default)]
    pub format: Option<String>,
    /// At most this many rows (capped by the server's limit).
    #[serde(default)]
    pub max_rows: Option<usize>,
}

/// `POST /v1/sql`: read-only SQL over the stores and result tables. A cut answer says so in
/// `x-fleetstream-truncated: true`.
#[utoipa::path(post, path = "/v1/sql", tag = "sql", request_body = SqlRequest,
    responses((status = 200, description = "The rows in the asked format"), (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 504, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn sql(
    State(api): State<Api>,
    principal: Principal,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Analyst])?;
    let request: SqlRequest = {
        let mut de = serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            ApiError::malformed(Some(field.clone()), format!("{field}: {}", e.inner()))
        })?
    };
    let format = request.format.as_deref().unwrap_or("json");
    let arrow = format == "arrow";
    let text_format: Format = if arrow {
        Format::Json
    } else {
        format
            .parse()
            .map_err(|e: String| ApiError::invalid("format", format!("format: {e} (or arrow)")))?
    };
    if request.sql.trim().is_empty() {
        return Err(ApiError::invalid("sql", "sql: empty"));
    }
    let mut queries = api.parts().queries.clone();
    if let Some(n) = request.max_rows {
        if n == 0 {
            return Err(ApiError::invalid("max_rows", "max_rows: must be at least 1"));
        }
        queries = queries.with_max_rows(n);
    }
    let output = queries.query(&request.sql).await.map_err(query_error)?;
    let (content_type, bytes) = if arrow {
        let mut out = Vec::new();
        {
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &output.schema)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            for batch in &output.batches {
                writer
                    .write(batch)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
            }
            writer.finish().map_err(|e| ApiError::internal(e.to_string()))?;
        }
        ("application/vnd.apache.arrow.stream", out)
    } else {
        let bytes = fleetstream_queries::format::render(&output, text_format)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let content_type = match text_format {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Table => "text/plain; charset=utf-8",
        };
        (content_type, bytes)
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    response.headers_mut().insert(
        "x-fleetstream-truncated",
        HeaderValue::from_static(if output.truncated { "true" } else { "false" }),
    );
    response
        .headers_mut()
        .insert("x-fleetstream-rows", HeaderValue::from(output.num_rows()));
    Ok(response)
}

/// `GET /v1/trips/{id}/events` (Server-Sent Events): the trip's current state first (event
/// `state`), then every trip event after the state's `last_event_id` (event `trip`, id =
/// `event_id`): the recent ones the state does not reflect yet, then each one as it is written.
#[utoipa::path(get, path = "/v1/trips/{id}/events", tag = "queries",
    params(("id" = String, Path, description = "Trip id"), ("access_token" = Option<String>, Query, description = "The bearer token, for EventSource clients that cannot send headers")),
    responses((status = 200, description = "text/event-stream"), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn trip_events(
    State(api): State<Api>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    principal.require(&[Role::App, Role::Driver, Role::Analyst])?;
    literal("id", &id)?;
    // Follow before reading the state, so no update falls between the two.
    let (mut updates, recent) = api.follow_trip(&id);
    let state = find_trip(&api, &id).await?;
    if principal.role == Role::Driver
        && let Some(trip) = &state
        && trip.get("driver_id").and_then(Value::as_str) != Some(principal.sub.as_str())
    {
        return Err(ApiError::forbidden(format!(
            "trip {id} is not driver {}'s",
            principal.sub
        )));
    }
    let mut resume = Resume::after(recent, state.as_ref());
    let stream = async_stream(move |tx| async move {
        let event = |update: &TripUpdate| {
            Event::default()
                .event("trip")
                .id(update.event_id.clone())
                .json_data(&*update.event)
                .expect("JSON")
        };
        if let Some(state) = state {
            let _ = tx
                .send(Event::default().event("state").json_data(&state).expect("JSON"))
                .await;
        }
        for update in std::mem::take(&mut resume.replay) {
            if tx.send(event(&update)).await.is_err() {
                return;
            }
        }
        loop {
            match updates.recv().await {
                Ok(update) if update.trip_id == id && resume.news(&update) => {
                    if tx.send(event(&update)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    let _ = tx
                        .send(
                            Event::default()
                                .event("lagged")
                                .data(format!("{n} updates were dropped; re-read /v1/trips/{id}")),
                        )
                        .await;
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A stream fed by a task through a channel.
pub(crate) fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok)
}

/// Stops the trip-event tail when dropped or stopped.
#[derive(Debug)]
pub struct Tail {
    stop: Arc<AtomicBool>,
}

impl Tail {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Follows `trip.events` from its end on a thread of its own and publishes every record to the
/// SSE subscribers. Every instance tails every partition: a rider's stream may be served by any
/// instance.
pub fn tail_trip_events(api: Api) -> Tail {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let topic = api.topic(topics::TRIP_EVENTS);
    let spawned = std::thread::Builder::new()
        .name("trip-events-tail".into())
        .spawn(move || {
            let log = api.parts().log.clone();
            let mut consumer = None;
            while !stopped.load(Ordering::Relaxed) {
                if consumer.is_none() {
                    let opened = consumer_at_end(&*log, &topic);
                    match opened {
                        Ok(c) => consumer = Some(c),
                        Err(e) => {
                            tracing::debug!(error = %e, "trip events not readable yet");
                            std::thread::sleep(Duration::from_millis(500));
                            continue;
                        }
                    }
                }
                let c = consumer.as_mut().expect("opened");
                match c.poll(1_000, Duration::from_millis(200)) {
                    Ok(fetched) => {
                        for record in fetched.into_iter().flat_map(|f| f.records) {
                            let Some(value) = record.value else { continue };
                            let Ok(event) = serde_json::from_slice::<Value>(&value) else {
                                continue;
                            };
                            api.publish(TripUpdate::new(event));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading trip events failed; reopening");
                        consumer = None;
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the trip events tail; SSE gets no updates");
    }
    Tail { stop }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn update(kind: &str, ts: &str) -> TripUpdate {
        TripUpdate::new(json!({"trip_id": "t1", "event_id": format!("t1:{kind}"), "ts": ts, "type": kind}))
    }

    fn lifecycle() -> Vec<TripUpdate> {
        vec![
            update("requested", "2026-12-07T10:00:00.000Z"),
            update("offered", "2026-12-07T10:00:00.000Z"),
            update("matched", "2026-12-07T10:00:01.000Z"),
            update("started", "2026-12-07T10:00:02.000Z"),
        ]
    }

    fn state(last: &str, updated_at: &str) -> Map<String, Value> {
        json!({"trip_id": "t1", "last_event_id": format!("t1:{last}"), "updated_at": updated_at})
            .as_object()
            .unwrap()
            .clone()
    }

    fn ids(updates: &[TripUpdate]) -> Vec<&str> {
        updates.iter().map(|u| u.event_id.as_str()).collect()
    }

    #[test]
    fn an_update_reads_its_trip_id_and_time() {
        let u = update("requested", "2026-12-07T10:00:00.250+01:00");
        assert_eq!(u.trip_id, "t1");
        assert_eq!(u.event_id, "t1:requested");
        assert_eq!(u.ts, Some(1_796_634_000_250));
        assert_eq!(millis("2026-12-07T09:00:00.250Z"), Some(1_796_634_000_250));
        assert_eq!(millis("2026-12-07T09:00:00.250"), None, "no zone, no instant");
        assert_eq!(TripUpdate::new(json!({"ts": "yesterday"})).ts, None);
    }

    #[test]
    fn without_a_state_every_recent_update_is_news() {
        let resume = Resume::after(lifecycle(), None);
        assert_eq!(
            ids(&resume.replay),
            ["t1:requested", "t1:offered", "t1:matched", "t1:started"]
        );
        assert!(resume.skip_through.is_none());
    }

    #[test]
    fn a_state_resumes_after_its_last_event() {
        let resume = Resume::after(lifecycle(), Some(&state("offered", "2026-12-07T10:00:00.000Z")));
        assert_eq!(ids(&resume.replay), ["t1:matched", "t1:started"]);
        assert!(resume.skip_through.is_none());
    }

    #[test]
    fn a_state_ahead_of_the_tail_skips_live_updates_up_to_its_last_event() {
        // The tail has read up to `requested`; the state already holds `matched`.
        let recent = lifecycle()[..1].to_vec();
        let mut resume = Resume::after(recent, Some(&state("matched", "2026-12-07T10:00:01.000Z")));
        assert!(resume.replay.is_empty(), "{:?}", ids(&resume.replay));
        let live = lifecycle();
        assert!(!resume.news(&live[1]), "offered is in the state");
        assert!(!resume.news(&live[2]), "matched is the state's last event");
        assert!(resume.news(&live[3]));
        assert!(
            resume.news(&update("completed", "2026-12-07T09:00:00.000Z")),
            "past the state, everything is news"
        );
    }

    #[test]
    fn a_state_whose_last_event_left_the_recent_updates_replays_from_its_time_on() {
        // `requested` and `offered` were dropped from the recent updates; the state holds `offered`.
        let recent = lifecycle()[2..].to_vec();
        let mut resume = Resume::after(recent, Some(&state("offered", "2026-12-07T10:00:00.000Z")));
        assert_eq!(ids(&resume.replay), ["t1:matched", "t1:started"]);
        // The first later update lifts the filter.
        assert!(resume.news(&update("completed", "2026-12-07T10:00:03.000Z")));
        assert!(resume.skip_through.is_none());
        // `requested` left the recent updates; `offered` has the same time. A tie may repeat
        // an event (under its id, which a client drops); it never drops one.
        let resume = Resume::after(
            vec![update("offered", "2026-12-07T10:00:00.000Z")],
            Some(&state("requested", "2026-12-07T10:00:00.000Z")),
        );
        assert_eq!(ids(&resume.replay), ["t1:offered"]);
    }

    #[test]
    fn an_update_is_either_recent_or_live_for_a_follower() {
        let feed = TripFeed::new();
        let mut early = feed.subscribe();
        feed.publish(update("requested", "2026-12-07T10:00:00.000Z"));
        feed.publish(TripUpdate::new(
            json!({"trip_id": "t2", "event_id": "t2:requested"}),
        ));
        let (mut live, recent) = feed.follow("t1");
        feed.publish(update("offered", "2026-12-07T10:00:00.000Z"));
        assert_eq!(ids(&recent), ["t1:requested"]);
        assert_eq!(live.try_recv().unwrap().event_id, "t1:offered");
        assert!(live.try_recv().is_err());
        let all: Vec<String> = std::iter::from_fn(|| early.try_recv().ok())
            .map(|u| u.event_id)
            .collect();
        assert_eq!(all, ["t1:requested", "t2:requested", "t1:offered"]);
    }

    #[test]
    fn the_recent_updates_are_bounded() {
        let feed = TripFeed::new();
        for n in 0..RECENT_UPDATES + 10 {
            feed.publish(TripUpdate::new(
                json!({"trip_id": "t1", "event_id": format!("t1:{n}")}),
            ));
        }
        let (_, recent) = feed.follow("t1");
        assert_eq!(recent.len(), RECENT_UPDATES);
        assert_eq!(recent[0].event_id, "t1:10");
    }
}
