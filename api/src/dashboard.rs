//! The dispatcher dashboard: a page shipped inside the binary (`api/assets/`), and the two
//! feeds it draws from — the H3 cells of supply, demand and surge, and live trip events.

use std::convert::Infallible;
use std::str::FromStr as _;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::reads::{async_stream, rows};
use crate::{Api, ApiError, Principal, Role};

const INDEX: &str = include_str!("../assets/index.html");
const APP: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// `GET /`: the dashboard page (it asks for a token itself).
pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

/// `GET /assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP).into_response(),
        "style.css" => ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response(),
        _ => ApiError::not_found(format!("no asset {file:?}")).into_response(),
    }
}

/// One H3 cell of the map.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cell {
    pub cell: String,
    /// The cell's corners, `[lat, lng]`.
    pub boundary: Vec<[f64; 2]>,
    pub center: [f64; 2],
    /// Available drivers in the cell.
    pub supply: u64,
    /// Open trips picked up in the cell.
    pub demand: u64,
    /// The highest surge of the cell's open trips (decimal string).
    pub surge: Option<String>,
}

/// What the map shows.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cells {
    pub resolution: u8,
    pub cells: Vec<Cell>,
    /// Open trips (not completed, cancelled or without a driver).
    pub trips: Vec<Map<String, Value>>,
    pub generated_at: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CellsQuery {
    /// H3 resolution of the cells (default 7, 4..=10).
    pub res: Option<u8>,
}

async fn build(api: &Api, res: u8) -> Result<Cells, ApiError> {
    let resolution = h3o::Resolution::try_from(res)
        .map_err(|_| ApiError::invalid("res", format!("res: {res} is not an H3 resolution")))?;
    let supply = rows(
        api,
        &format!("SELECT h3_cell(lat, lng, {res}) AS cell, COUNT(*) AS supply FROM drivers WHERE online AND available AND lat IS NOT NULL GROUP BY 1"),
    )
    .await?;
    let trips = rows(
        api,
        "SELECT trip_id, status, driver_id, pickup_lat, pickup_lng, vehicle_class, fare, surge, requested_at FROM trips \
         WHERE status NOT IN ('completed', 'cancelled', 'no_driver') ORDER BY requested_at DESC, trip_id LIMIT 500",
    )
    .await?;
    let mut cells: std::collections::BTreeMap<String, Cell> = std::collections::BTreeMap::new();
    for row in &supply {
        if let (Some(id), Some(n)) = (
            row.get("cell").and_then(Value::as_str),
            row.get("supply").and_then(Value::as_u64),
        ) && let Some(c) = cell(&mut cells, id)
        {
            c.supply = n;
        }
    }
    let mut open = Vec::with_capacity(trips.len());
    for trip in trips {
        let (Some(lat), Some(lng)) = (
            trip.get("pickup_lat").and_then(Value::as_f64),
            trip.get("pickup_lng").and_then(Value::as_f64),
        ) else {
            continue;
        };
        let Ok(point) = h3o::LatLng::new(lat, lng) else {
            continue;
        };
        let id = point.to_cell(resolution).to_string();
        if let Some(c) = cell(&mut cells, &id) {
            c.demand += 1;
            if let Some(s) = trip.get("surge").and_then(Value::as_str) {
                let higher = c
                    .surge
                    .as_deref()
                    .is_none_or(|old| old.parse::<f64>().unwrap_or(0.0) < s.parse::<f64>().unwrap_or(0.0));
                if higher {
                    c.surge = Some(s.to_string());
                }
            }
        }
        let mut t = Map::new();
        for k in [
            "trip_id",
            "status",
            "driver_id",
            "vehicle_class",
            "fare",
            "surge",
            "requested_at",
        ] {
            t.insert(k.to_string(), trip.get(k).cloned().unwrap_or(Value::Null));
        }
        t.insert("pickup".into(), json!({"lat": lat, "lng": lng}));
        t.insert("cell".into(), json!(id));
        open.push(t);
    }
    Ok(Cells {
        resolution: res,
        cells: cells.into_values().collect(),
        trips: open,
        generated_at: chrono::Utc::now().to_rfc3339(),
    })
}

/// The map's entry for a cell, made on first use.
fn cell<'a>(cells: &'a mut std::collections::BTreeMap<String, Cell>, id: &str) -> Option<&'a mut Cell> {
    let index = h3o::CellIndex::from_str(id).ok()?;
    Some(cells.entry(id.to_string()).or_insert_with(|| {
        let center = h3o::LatLng::from(index);
        Cell {
            cell: id.to_string(),
            boundary: index.boundary().iter().map(|p| [p.lat(), p.lng()]).collect(),
            center: [center.lat(), center.lng()],
            supply: 0,
            demand: 0,
            surge: None,
        }
    }))
}

/// `GET /v1/dashboard/cells?res=7`: supply, demand and surge per H3 cell, and the open trips.
#[utoipa::path(get, path = "/v1/dashboard/cells", tag = "dashboard", params(CellsQuery),
    responses((status = 200, body = Cells), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 422, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn cells(
    State(api): State<Api>,
    principal: Principal,
    uri: axum::http::Uri,
) -> Result<Json<Cells>, ApiError> {
    principal.require(&[Role::App, Role::Analyst])?;
    let q: CellsQuery = crate::reads::parse_query(&uri)?;
    Ok(Json(build(&api, q.res.unwrap_or(7)).await?))
}

/// `GET /v1/dashboard/events` (SSE): every trip event (event `trip`) and, every 2 s, the cells
/// (event `cells`).
#[utoipa::path(get, path = "/v1/dashboard/events", tag = "dashboard",
    params(("access_token" = Option<String>, Query, description = "The bearer token (EventSource cannot send headers)")),
    responses((status = 200, description = "text/event-stream"), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    State(api): State<Api>,
    principal: Principal,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    principal.require(&[Role::App, Role::Analyst])?;
    let mut updates = api.trip_updates();
    let stream = async_stream(move |tx| async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match build(&api, 7).await {
                        Ok(cells) => {
                            if tx.send(Event::default().event("cells").json_data(&cells).expect("JSON")).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::debug!(error = %e.message, "dashboard cells"),
                    }
                }
                update = updates.recv() => match update {
                    Ok(update) => {
                        if tx.send(Event::default().event("trip").id(update.event_id.clone()).json_data(&*update.event).expect("JSON")).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
