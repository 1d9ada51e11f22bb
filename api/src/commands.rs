//! Commands: each request becomes records on an input topic, answered `202 Accepted` with where
//! they landed. A request is validated whole before anything is appended: one bad ping in a batch
//! of a thousand refuses the batch, naming `pings[i].field`.
//!
//! Fields the caller may leave out are filled here: `ts` (now), and ids (`event_id`,
//! `punch_id`, `command_id`, `trip_id`). Ids are derived from the `Idempotency-Key` when there
//! is one, so even a retry that reaches another instance (which has not seen the key) appends a
//! record the stream drops as a duplicate.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use fleetstream_schemas::time::to_millis;
use fleetstream_schemas::{DriverStatus, GpsPing, Punch, TripCommand, Validate, WalletCommand, topics};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{Api, ApiError, Appended, Outgoing, Principal, Role, idempotent};

/// The answer to a command.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Where each record landed, in request order.
    pub records: Vec<Appended>,
}

/// The answer to a single-record command: the record's place, at the top level.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AcceptedOne {
    pub topic: String,
    pub key: String,
    pub partition: u32,
    pub offset: u64,
    /// The trip's id (generated when the request had none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trip_id: Option<String>,
}

/// The request body as one JSON value.
fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::malformed(
            Some("$".into()),
            "the request body is empty; expected JSON",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::malformed(Some("$".into()), format!("the body is not JSON: {e}")))
}

fn object(value: Value, at: &str) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::malformed(
            Some(at.into()),
            format!("{at}: expected a JSON object, found {}", kind(&other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A single object, an array of them, or `{"<list>": [...]}`.
fn one_or_many(value: Value, list: &str, max: usize) -> Result<(Vec<Map<String, Value>>, String), ApiError> {
    let (items, prefix) = match value {
        Value::Array(items) => (items, String::new()),
        Value::Object(mut map) if map.len() == 1 && map.contains_key(list) => match map.remove(list) {
            Some(Value::Array(items)) => (items, list.to_string()),
            Some(other) => {
                return Err(ApiError::malformed(
                    Some(list.into()),
                    format!("{list}: expected an array, found {}", kind(&other)),
                ));
            }
            None => unreachable!("checked"),
        },
        Value::Object(map) => return Ok((vec![map], "$".into())),
        other => {
            return Err(ApiError::malformed(
                Some("$".into()),
                format!("expected an object or an array, found {}", kind(&other)),
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            if prefix.is_empty() { "$" } else { list },
            "the batch is empty",
        ));
    }
    if items.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("{} records in one batch; at most {max}", items.len()),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        out.push(object(item, &format!("{prefix}[{i}]"))?);
    }
    Ok((out, prefix))
}

fn at(prefix: &str, i: usize, many: bool) -> String {
    match (many, prefix) {
        (false, _) => String::new(),
        (true, "$") => String::new(),
        (true, p) => format!("{p}[{i}]"),
    }
}

/// Fills `ts` with now when missing.
fn default_ts(map: &mut Map<String, Value>) {
    map.entry("ts")
        .or_insert_with(|| Value::String(fleetstream_schemas::time::format(&chrono::Utc::now())));
}

/// Fills an id field the caller left out (see [`generated_id`]).
fn default_id(map: &mut Map<String, Value>, field: &str, prefix: &str, idempotency: Option<&str>, i: usize) {
    map.entry(field)
        .or_insert_with(|| Value::String(generated_id(prefix, idempotency, i)));
}

/// An id for the `i`-th record of a request that came without one: from the idempotency key
/// (so that a retry gets the same ids), else a random one.
fn generated_id(prefix: &str, idempotency: Option<&str>, i: usize) -> String {
    match idempotency {
        Some(key) => format!("{prefix}-{}-{i}", uuid_from(key)),
        None => format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
    }
}

/// A stable id for an idempotency key: its FNV-1a 128-bit hash in hex.
fn uuid_from(key: &str) -> String {
    let mut hash: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in key.as_bytes() {
        hash ^= u128::from(*b);
        hash = hash.wrapping_mul(0x0000000001000000000000000000013b);
    }
    format!("{hash:032x}")
}

/// Sets the command's `type` from the route; the body may not name one itself.
fn set_type(map: &mut Map<String, Value>, command: &str) -> Result<(), ApiError> {
    if map.contains_key("type") {
        return Err(ApiError::invalid(
            "type",
            "type: not allowed here; the route names the command",
        ));
    }
    map.insert("type".into(), json!(command));
    Ok(())
}

/// Sets a field from the path; a different value in the body is an error.
fn from_path(map: &mut Map<String, Value>, field: &str, value: &str, prefix: &str) -> Result<(), ApiError> {
    match map.get(field) {
        Some(Value::String(s)) if s == value => Ok(()),
        Some(other) => Err(ApiError::invalid(
            join(prefix, field),
            format!(
                "{} is {other} in the body but {value:?} in the path",
                join(prefix, field)
            ),
        )),
        None => {
            map.insert(field.to_string(), Value::String(value.to_string()));
            Ok(())
        }
    }
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Decodes and validates a record from its object; errors name `prefix.field`.
fn decode<T: Validate>(map: Map<String, Value>, prefix: &str) -> Result<T, ApiError> {
    let bytes = serde_json::to_vec(&Value::Object(map)).expect("values serialize");
    fleetstream_schemas::decode::<T>(&bytes).map_err(|e| ApiError::schema(prefix, e))
}

fn outgoing<T: Serialize>(topic: &'static str, key: &str, value: &T, ts: i64) -> Outgoing {
    Outgoing {
        topic,
        key: key.to_string(),
        value: Bytes::from(serde_json::to_vec(value).expect("records serialize")),
        ts,
    }
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_string)
}

/// The answer to a batch, written out as it is (a batch of 1,000 pings has 1,000 placements: no
/// JSON value tree of them first).
async fn accepted(api: &Api, records: Vec<Outgoing>) -> Result<(StatusCode, Accepted), ApiError> {
    let appended = api.append(records).await?;
    Ok((StatusCode::ACCEPTED, Accepted { records: appended }))
}

async fn accepted_one(
    api: &Api,
    record: Outgoing,
    trip_id: Option<String>,
) -> Result<(StatusCode, Value), ApiError> {
    let appended = api
        .append(vec![record])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("nothing appended"))?;
    let one = AcceptedOne {
        topic: appended.topic,
        key: appended.key,
        partition: appended.partition,
        offset: appended.offset,
        trip_id,
    };
    Ok((StatusCode::ACCEPTED, serde_json::to_value(one).expect("JSON")))
}

/// The usual batch of pings decoded in one pass: an array (or `{"pings": [...]}`) of pings that
/// are all well-formed, valid and the caller's to send. Gives the same pings as the general path
/// (the same defaults for `ts` and `event_id`); `None` for anything else, which the general path
/// then accepts or refuses, naming the offending field.
fn pings_in_one_pass(
    body: &[u8],
    max: usize,
    idempotency: Option<&str>,
    principal: &Principal,
) -> Option<Vec<GpsPing>> {
    /// A ping as sent: `event_id` and `ts` may be left out (but not be `null`).
    #[derive(serde::Deserialize)]
    struct Sent {
        #[serde(default, deserialize_with = "present")]
        event_id: Option<String>,
        driver_id: String,
        lat: f64,
        lng: f64,
        #[serde(default)]
        speed_kmh: Option<f64>,
        #[serde(default)]
        heading: Option<f64>,
        #[serde(default, deserialize_with = "present_ts")]
        ts: Option<fleetstream_schemas::time::Timestamp>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapped {
        pings: Vec<Sent>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(Some)
    }
    fn present_ts<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<fleetstream_schemas::time::Timestamp>, D::Error> {
        fleetstream_schemas::time::rfc3339::deserialize(d).map(Some)
    }

    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    let sent: Vec<Sent> = match first {
        b'[' => serde_json::from_slice(body).ok()?,
        b'{' => serde_json::from_slice::<Wrapped>(body).ok()?.pings,
        _ => return None,
    };
    if sent.is_empty() || sent.len() > max {
        return None;
    }
    let now = || {
        let text = fleetstream_schemas::time::format(&chrono::Utc::now());
        fleetstream_schemas::time::parse(&text).expect("formatted timestamps parse")
    };
    let mut pings = Vec::with_capacity(sent.len());
    for (i, s) in sent.into_iter().enumerate() {
        let ping = GpsPing {
            event_id: s.event_id.unwrap_or_else(|| generated_id("ping", idempotency, i)),
            driver_id: s.driver_id,
            lat: s.lat,
            lng: s.lng,
            speed_kmh: s.speed_kmh,
            heading: s.heading,
            ts: s.ts.unwrap_or_else(now),
        };
        ping.validate().ok()?;
        principal.require_self(&ping.driver_id, "driver_id").ok()?;
        pings.push(ping);
    }
    Some(pings)
}

/// Pings from any accepted shape of body, each defaulted, decoded and validated on its own, so
/// that an error names the offending field (`pings[3].lat`).
fn pings_in_general(
    body: &Bytes,
    max: usize,
    idempotency: Option<&str>,
    principal: &Principal,
) -> Result<Vec<GpsPing>, ApiError> {
    let (items, prefix) = one_or_many(body_json(body)?, "pings", max)?;
    let many = prefix != "$";
    let mut pings = Vec::with_capacity(items.len());
    for (i, mut map) in items.into_iter().enumerate() {
        let p = at(&prefix, i, many);
        default_ts(&mut map);
        default_id(&mut map, "event_id", "ping", idempotency, i);
        let ping: GpsPing = decode(map, &p)?;
        principal.require_self(&ping.driver_id, &join(&p, "driver_id"))?;
        pings.push(ping);
    }
    Ok(pings)
}

/// `POST /v1/gps`: one ping, an array of pings, or `{"pings": [...]}`.
#[utoipa::path(post, path = "/v1/gps", tag = "commands",
    request_body(content = crate::bodies::GpsBody, description = "A ping, an array of them, or `{\"pings\": [...]}`"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry a no-op")),
    responses((status = 202, body = Accepted), (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 413, body = crate::ErrorBody), (status = 422, body = crate::ErrorBody), (status = 429, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn gps(State(api): State<Api>, principal: Principal, headers: HeaderMap, body: Bytes) -> Response {
    let work = async {
        principal.require(&[Role::App, Role::Driver])?;
        let key = idempotency_key(&headers);
        let max = api.parts().limits.max_batch;
        let pings = match pings_in_one_pass(&body, max, key.as_deref(), &principal) {
            Some(pings) => pings,
            None => pings_in_general(&body, max, key.as_deref(), &principal)?,
        };
        let records = pings
            .iter()
            .map(|ping| outgoing(topics::GPS_PINGS, &ping.driver_id, ping, to_millis(&ping.ts)))
            .collect();
        accepted(&api, records).await
    };
    idempotent(&api, &principal, &headers, work).await
}

/// `POST /v1/drivers/{id}/status`: `{status: online|offline, vehicle_class, ts?}`.
#[utoipa::path(post, path = "/v1/drivers/{id}/status", tag = "commands",
    params(("id" = String, Path, description = "Driver id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry a no-op")),
    request_body(content = crate::bodies::DriverStatusBody),
    responses((status = 202, body = AcceptedOne), (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 422, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn driver_status(
    State(api): State<Api>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let work = async {
        principal.require(&[Role::App, Role::Driver])?;
        principal.require_self(&id, "driver_id")?;
        let mut map = object(body_json(&body)?, "$")?;
        from_path(&mut map, "driver_id", &id, "")?;
        default_ts(&mut map);
        let status: DriverStatus = decode(map, "")?;
        accepted_one(
            &api,
            outgoing(
                topics::DRIVER_STATUS,
                &status.driver_id,
                &status,
                to_millis(&status.ts),
            ),
            None,
        )
        .await
    };
    idempotent(&api, &principal, &headers, work).await
}

/// `POST /v1/trips`: a ride request `{rider_id, pickup: {lat, lng}, dropoff, vehicle_class, trip_id?, ts?}`.
#[utoipa::path(post, path = "/v1/trips", tag = "commands",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry a no-op")),
    request_body(content = crate::bodies::TripRequestBody),
    responses((status = 202, body = AcceptedOne), (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 422, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn request_trip(
    State(api): State<Api>,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let work = async {
        principal.require(&[Role::App])?;
        let mut map = object(body_json(&body)?, "$")?;
        set_type(&mut map, "request")?;
        default_ts(&mut map);
        default_id(&mut map, "trip_id", "t", idempotency_key(&headers).as_deref(), 0);
        let command: TripCommand = decode(map, "")?;
        let trip_id = command.trip_id().to_string();
        accepted_one(
            &api,
            outgoing(
                topics::TRIP_COMMANDS,
                &trip_id,
                &command,
                to_millis(&command.ts()),
            ),
            Some(trip_id.clone()),
        )
        .await
    };
    idempotent(&api, &principal, &headers, work).await
}

/// `POST /v1/trips/{id}/{accept|decline|start|complete|cancel}`: `{driver_id, ts?}`, or for
/// cancel `{by: rider|driver, reason?, ts?}`. A driver's token fills `driver_id` itself.
#[utoipa::path(post, path = "/v1/trips/{id}/{action}", tag = "commands",
    params(("id" = String, Path, description = "Trip id"), ("action" = crate::bodies::TripAction, Path, description = "What to do to the trip"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry a no-op")),
    request_body(content = crate::bodies::TripActionBody),
    responses((status = 202, body = AcceptedOne), (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody), (status = 422, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn trip_action(
    State(api): State<Api>,
    principal: Principal,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let work = async {
        if !matches!(
            action.as_str(),
            "accept" | "decline" | "start" | "complete" | "cancel"
        ) {
            return Err(ApiError::not_found(format!(
                "no trip action {action:?} (accept, decline, start, complete, cancel)"
            )));
        }
        principal.require(&[Role::App, Role::Driver])?;
        let mut map = if body.is_empty() {
            Map::new()
        } else {
            object(body_json(&body)?, "$")?
        };
        set_type(&mut map, &action)?;
        from_path(&mut map, "trip_id", &id, "")?;
        if principal.role == Role::Driver {
            if action == "cancel" {
                from_path(&mut map, "by", "driver", "")?;
            } else {
                map.entry("driver_id").or_insert_with(|| json!(principal.sub));
            }
        }
        default_ts(&mut map);
        let command: TripCommand = decode(map, "")?;
        if let Some(driver) = command.driver_id() {
            principal.require_self(driver, "driver_id")?;
        }
        accepted_one(
            &api,
            outgoing(topics::TRIP_COMMANDS, &id, &command, to_millis(&command.ts())),
            None,
        )
        .await
    };
    idempotent(&api, &principal, &headers, work).await
}

/// `POST /v1/wallets/{id}/top-ups`: `{amount: "20.00", command_id?, ts?}`.
#[utoipa::path(post, path = "/v1/wallets/{id}/top-ups", tag = "commands",
    params(("id" = String, Path, description = "Account id, e.g. rider:r1"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry a no-op")),
    request_body(content = crate::bodies::TopUpBody),
    responses((status = 202, body = AcceptedOne), (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 422, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn top_up(
    State(api): State<Api>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let work = async {
        principal.require(&[Role::App])?;
        let mut map = object(body_json(&body)?, "$")?;
        set_type(&mut map, "top_up")?;
        from_path(&mut map, "account_id", &id, "")?;
        default_ts(&mut map);
        default_id(
            &mut map,
            "command_id",
            "topup",
            idempotency_key(&headers).as_deref(),
            0,
        );
        let command: WalletCommand = decode(map, "")?;
        accepted_one(
            &api,
            outgoing(
                topics::WALLET_COMMANDS,
                command.account_id(),
                &command,
                to_millis(&command.ts()),
            ),
            None,
        )
        .await
    };
    idempotent(&api, &principal, &headers, work).await
}

/// `POST /v1/timesheets/punches`: one punch `{employee_id, kind, ts?, punch_id?}`, an array, or
/// `{"punches": [...]}`.
#[utoipa::path(post, path = "/v1/timesheets/punches", tag = "commands",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry a no-op")),
    request_body(content = crate::bodies::PunchesBody, description = "A punch, an array of them, or `{\"punches\": [...]}`"),
    responses((status = 202, body = Accepted), (status = 400, body = crate::ErrorBody), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 413, body = crate::ErrorBody), (status = 422, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn punches(
    State(api): State<Api>,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let work = async {
        principal.require(&[Role::App, Role::Hr])?;
        let (items, prefix) = one_or_many(body_json(&body)?, "punches", api.parts().limits.max_batch)?;
        let many = prefix != "$";
        let key = idempotency_key(&headers);
        let mut records = Vec::with_capacity(items.len());
        for (i, mut map) in items.into_iter().enumerate() {
            let p = at(&prefix, i, many);
            default_ts(&mut map);
            default_id(&mut map, "punch_id", "punch", key.as_deref(), i);
            let punch: Punch = decode(map, &p)?;
            records.push(outgoing(
                topics::TIMESHEET_PUNCHES,
                &punch.employee_id,
                &punch,
                to_millis(&punch.ts),
            ));
        }
        accepted(&api, records).await
    };
    idempotent(&api, &principal, &headers, work).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> Principal {
        Principal {
            sub: "bench".into(),
            role: Role::App,
        }
    }

    #[test]
    fn one_pass_gives_what_the_general_path_gives() {
        let bodies = [
            r#"[{"driver_id":"d1","lat":52.5,"lng":13.4,"event_id":"e1","ts":"2026-11-02T07:00:00+01:00"}]"#,
            r#"{"pings":[{"driver_id":"d1","lat":52,"lng":13,"event_id":"e1","ts":"2026-11-02T06:00:00Z","speed_kmh":null,"heading":90,"extra":1},
                         {"driver_id":"d2","lat":-33.9,"lng":151.2,"ts":"2026-11-02T06:00:01Z","speed_kmh":12.5}]}"#,
            r#" [ {"driver_id":"d3","lat":0,"lng":0,"ts":"2026-11-02T06:00:00Z"}, {"driver_id":"d3","lat":1e-3,"lng":-1.5e1,"ts":"2026-11-02T06:00:00.123Z"} ] "#,
        ];
        for body in bodies {
            let body = Bytes::from(body);
            let fast = pings_in_one_pass(&body, 10, Some("retry-1"), &app()).expect("the usual batch");
            let general = pings_in_general(&body, 10, Some("retry-1"), &app()).expect("valid");
            assert_eq!(fast, general, "{body:?}");
        }
        // Without an idempotency key the ids are random, but shaped alike; ts defaults to now.
        let body = Bytes::from(r#"[{"driver_id":"d1","lat":52.5,"lng":13.4}]"#);
        let before = chrono::Utc::now() - chrono::Duration::seconds(1);
        let fast = pings_in_one_pass(&body, 10, None, &app()).expect("the usual batch");
        assert!(fast[0].event_id.starts_with("ping-") && fast[0].event_id.len() == 37);
        assert!(fast[0].ts >= before && fast[0].ts <= chrono::Utc::now());
        assert_eq!(
            fast[0].ts,
            fleetstream_schemas::time::parse(&fleetstream_schemas::time::format(&fast[0].ts)).unwrap()
        );
    }

    #[test]
    fn one_pass_leaves_everything_else_to_the_general_path() {
        let driver = Principal {
            sub: "d1".into(),
            role: Role::Driver,
        };
        let refused = [
            // One ping, not a batch.
            r#"{"driver_id":"d1","lat":52.5,"lng":13.4}"#,
            // null where the general path refuses null.
            r#"[{"driver_id":"d1","lat":52.5,"lng":13.4,"event_id":null}]"#,
            r#"[{"driver_id":"d1","lat":52.5,"lng":13.4,"ts":null}]"#,
            // Invalid values, bad shapes, limits.
            r#"[{"driver_id":"d1","lat":95,"lng":13.4}]"#,
            r#"[{"driver_id":"d1","lat":52.5,"lng":13.4,"heading":400}]"#,
            r#"[{"driver_id":"d1","lat":52.5,"lng":13.4,"ts":"2026-11-02T06:00:00"}]"#,
            r#"[{"driver_id":"d 1","lat":52.5,"lng":13.4}]"#,
            r#"[{"driver_id":"d1","lat":52.5,"lng":13.4,"lat":52.6}]"#,
            r#"{"pings":[{"driver_id":"d1","lat":52.5,"lng":13.4}],"other":1}"#,
            r#"[]"#,
            r#"[1]"#,
            r#"not json"#,
        ];
        for body in refused {
            assert!(
                pings_in_one_pass(body.as_bytes(), 10, None, &app()).is_none(),
                "{body}"
            );
        }
        let many = format!("[{}]", [r#"{"driver_id":"d1","lat":1,"lng":1}"#; 11].join(","));
        assert!(
            pings_in_one_pass(many.as_bytes(), 10, None, &app()).is_none(),
            "over the batch limit"
        );
        let other = r#"[{"driver_id":"d2","lat":52.5,"lng":13.4}]"#;
        assert!(
            pings_in_one_pass(other.as_bytes(), 10, None, &driver).is_none(),
            "another driver's ping"
        );
        let own = r#"[{"driver_id":"d1","lat":52.5,"lng":13.4}]"#;
        assert!(pings_in_one_pass(own.as_bytes(), 10, None, &driver).is_some());
        // What the general path says of them names the field.
        let e = pings_in_general(&Bytes::from(r#"{"pings":[{"driver_id":"d1","lat":52.5,"lng":13.4},{"driver_id":"d1","lat":95,"lng":13.4}]}"#), 10, None, &app()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("pings[1].lat"), "{e:?}");
    }
}
