//! The OpenAPI 3 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "fleetstream edge API", description = "Commands, live queries, SQL and exports of fleetstream. Every route needs a bearer token (RS256 JWT) with a role: app, driver, analyst, hr or admin. Errors are JSON `{error, code, field?}`."),
    paths(
        crate::commands::gps,
        crate::commands::driver_status,
        crate::commands::request_trip,
        crate::commands::trip_action,
        crate::commands::top_up,
        crate::commands::punches,
        crate::reads::trip,
        crate::reads::trip_events,
        crate::reads::nearby,
        crate::reads::wallet,
        crate::reads::overtime,
        crate::reads::export_overtime,
        crate::reads::sql,
        crate::dashboard::cells,
        crate::dashboard::events,
    ),
    components(schemas(crate::ErrorBody, crate::SqlPosition, crate::Appended, crate::commands::Accepted, crate::commands::AcceptedOne, crate::reads::Nearby, crate::reads::WalletView, crate::reads::OvertimeView, crate::reads::SqlRequest, crate::dashboard::Cells, crate::dashboard::Cell, crate::bodies::TripAction)),
    modifiers(&Bearer),
    tags((name = "commands", description = "Records on input topics, answered 202"), (name = "queries", description = "Interactive queries on the state stores"), (name = "sql", description = "Analysts' SQL"), (name = "exports", description = "HR and accounting downloads"), (name = "dashboard", description = "The dispatcher dashboard's feeds"))
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// `GET /openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
