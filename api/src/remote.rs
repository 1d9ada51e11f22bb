//! Reading other instances' store partitions: the SQL engine's [`RemoteScan`], and the internal
//! endpoint it calls.
//!
//! A store's partitions follow its sub-topology's input partitions, which the group assigns to
//! stream threads; every thread announces what it owns on the members topic, with its
//! instance's API address. A query reads its own partitions at one cut and asks each owner of
//! the others for theirs (`POST /internal/v1/scan`, answered as an Arrow IPC stream, lookups
//! applied there). Each owner reads at its own cut: a multi-instance answer is consistent per
//! partition, not one global snapshot. A partition that has no live owner (a rebalance in
//! flight) fails the query with 503 rather than answering without it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use datafusion::error::{DataFusionError, Result as DfResult};
use fleetstream_queries::{Lookup, RemoteScan, StoreSource, StoreTable};
use fleetstream_topology::runtime::Members;
use serde::{Deserialize, Serialize};

use crate::{Api, ApiError, Keys, Principal, Role};

/// Where a store table's partitions live.
#[derive(Debug, Clone)]
pub struct Route {
    /// An input topic of the store's sub-topology (its partitions are the store's).
    pub topic: String,
    pub partitions: u32,
}

/// The [`RemoteScan`] of an instance.
pub struct RemoteStores {
    members: Arc<Members>,
    routes: BTreeMap<StoreTable, Route>,
    keys: Keys,
    client: reqwest::Client,
}

impl std::fmt::Debug for RemoteStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStores")
            .field("routes", &self.routes)
            .finish()
    }
}

impl RemoteStores {
    pub fn new(members: Arc<Members>, routes: BTreeMap<StoreTable, Route>, keys: Keys) -> RemoteStores {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        RemoteStores {
            members,
            routes,
            keys,
            client,
        }
    }
}

/// The body of `POST /internal/v1/scan`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    pub table: String,
    pub partitions: BTreeSet<u32>,
    /// Only these keys; all rows when absent.
    pub keys: Option<BTreeSet<String>>,
}

fn external(message: String) -> DataFusionError {
    DataFusionError::Execution(message)
}

#[async_trait::async_trait]
impl RemoteScan for RemoteStores {
    fn missing_partitions(&self, table: StoreTable, local: &BTreeSet<u32>) -> BTreeSet<u32> {
        match self.routes.get(&table) {
            Some(route) => (0..route.partitions).filter(|p| !local.contains(p)).collect(),
            None => BTreeSet::new(),
        }
    }

    async fn scan(
        &self,
        table: StoreTable,
        partitions: BTreeSet<u32>,
        lookup: Lookup,
    ) -> DfResult<Vec<RecordBatch>> {
        let Some(route) = self.routes.get(&table) else {
            return Ok(Vec::new());
        };
        // Group the partitions by owner.
        let mut by_owner: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for p in &partitions {
            let owner = self.members.owner(&route.topic, *p).ok_or_else(|| {
                external(format!(
                    "partition {p} of {} has no live owner (a rebalance in flight?); retry shortly",
                    table.name()
                ))
            })?;
            if owner.instance_id == self.members.instance_id() {
                // Ours after all (assigned since the cut): the next query reads it locally.
                return Err(external(format!(
                    "partition {p} of {} moved to this instance during the query; retry",
                    table.name()
                )));
            }
            let url = owner.url.ok_or_else(|| {
                external(format!(
                    "the owner of partition {p} of {} ({}) announces no API address (api.advertised_url)",
                    table.name(),
                    owner.instance_id
                ))
            })?;
            by_owner.entry(url).or_default().insert(*p);
        }
        let token = self
            .keys
            .mint("fleetstream-instance", Role::Admin, Duration::from_secs(300))
            .map_err(|e| external(format!("cannot authenticate to other instances: {e}")))?;
        let keys = match &lookup {
            Lookup::All => None,
            Lookup::Keys(keys) => Some(keys.clone()),
        };
        let calls = by_owner.into_iter().map(|(url, partitions)| {
            let request = ScanRequest {
                table: table.name().to_string(),
                partitions,
                keys: keys.clone(),
            };
            let call = self
                .client
                .post(format!("{url}/internal/v1/scan"))
                .bearer_auth(&token)
                .json(&request)
                .send();
            async move {
                let response = call
                    .await
                    .map_err(|e| external(format!("{url} unreachable: {e}")))?;
                let status = response.status();
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| external(format!("{url} unreachable: {e}")))?;
                if !status.is_success() {
                    return Err(external(format!(
                        "{url} answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    )));
                }
                let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
                    .map_err(|e| external(format!("{url}: {e}")))?;
                reader
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| external(format!("{url}: {e}")))
            }
        });
        let answers = futures::future::try_join_all(calls).await?;
        Ok(answers.into_iter().flatten().collect())
    }
}

/// `POST /internal/v1/scan`: rows of this instance's partitions of a store table (admin only;
/// instances call each other with it).
pub async fn scan(
    State(api): State<Api>,
    principal: Principal,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Admin])?;
    let request: ScanRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::malformed(Some("$".into()), format!("not a scan request: {e}")))?;
    let table = StoreTable::from_name(&request.table)
        .ok_or_else(|| ApiError::invalid("table", format!("table: no store table {:?}", request.table)))?;
    let source: StoreSource = api
        .parts()
        .stores
        .clone()
        .ok_or_else(|| ApiError::unavailable("this instance has no stores"))?;
    let lookup = match request.keys {
        Some(keys) => Lookup::Keys(keys),
        None => Lookup::All,
    };
    let partitions = request.partitions;
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let _cut = source.registry.read_cut();
        let (batch, read) = source
            .read_local(table, Some(&partitions), &lookup)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(p) = partitions.difference(&read).next() {
            return Err(ApiError::unavailable(format!(
                "partition {p} of {} is not on this instance (any more)",
                table.name()
            )));
        }
        let mut out = Vec::new();
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        writer
            .write(&batch)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        writer.finish().map_err(|e| ApiError::internal(e.to_string()))?;
        drop(writer);
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")],
        bytes,
    )
        .into_response())
}
