//! Starting the edge API beside a running engine, and the keys its tokens are checked with.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use fleetstream_api::remote::{RemoteStores, Route};
use fleetstream_api::{Api, ApiParts, Keys, Limits, Role};
use fleetstream_operators::topology::Stores;
use fleetstream_queries::{RemoteScan, StoreSource, StoreTable};
use fleetstream_topology::Engine;

use crate::config::AppConfig;

/// The keys of this configuration: the configured files, else the data directory's generated
/// pair (made now when missing; `true` then).
pub fn keys(config: &AppConfig) -> Result<(Keys, bool)> {
    match (&config.auth.public_key_file, &config.auth.private_key_file) {
        (Some(public), private) => Ok((Keys::from_files(public, private.as_deref())?, false)),
        (None, Some(_)) => anyhow::bail!("auth.private_key_file is set but auth.public_key_file is not"),
        (None, None) => Ok(Keys::load_or_create(&config.data_dir)?),
    }
}

/// Where each store table's partitions are assigned: its sub-topology's first input topic.
pub fn routes(engine: &Engine, stores: &Stores) -> BTreeMap<StoreTable, Route> {
    let mut routes = BTreeMap::new();
    for table in StoreTable::ALL {
        let name = table.store_name(stores);
        let Some(sub) = engine.topology().owner_of_store(&name) else {
            continue;
        };
        let Some(topic) = sub.topics.first() else { continue };
        if let Some(partitions) = engine.partitions_of(topic) {
            routes.insert(
                table,
                Route {
                    topic: topic.clone(),
                    partitions,
                },
            );
        }
    }
    routes
}

/// A running edge API.
pub struct Edge {
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Edge {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the edge API stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the edge API task failed"),
            Err(_) => tracing::warn!("the edge API did not stop within 10 s"),
        }
    }
}

/// The API of a running engine (not yet listening).
pub fn api(
    config: &AppConfig,
    engine: &Engine,
    stores: Stores,
    keys: Keys,
    ready: Arc<AtomicBool>,
) -> Result<Api> {
    let remote: Option<Arc<dyn RemoteScan>> = engine.log().is_distributed().then(|| {
        Arc::new(RemoteStores::new(
            engine.members(),
            routes(engine, &stores),
            keys.clone(),
        )) as Arc<dyn RemoteScan>
    });
    let queries = crate::commands::sql::engine_for(config, engine, stores.clone(), remote.clone())?;
    let parts = ApiParts {
        log: engine.log().clone(),
        topic_prefix: config.topic_prefix.clone(),
        keys,
        queries,
        stores: Some(StoreSource {
            registry: engine.registry(),
            stores,
            remote,
        }),
        members: Some(engine.members()),
        limits: Limits {
            rate_per_second: config.api.rate_limit,
            burst: config.api.burst,
            max_batch: config.api.max_batch,
            ..Limits::default()
        },
        ready: Arc::new(move || ready.load(Ordering::Relaxed)),
    };
    Ok(Api::new(parts))
}

/// Binds `[api] addr` and serves the API until stopped. Prints an admin token when the keys are
/// the data directory's own.
pub async fn start(
    config: &AppConfig,
    engine: &Engine,
    stores: Stores,
    ready: Arc<AtomicBool>,
) -> Result<Edge> {
    let (keys, created) = keys(config)?;
    if config.auth.public_key_file.is_none() {
        let token = keys.mint("admin", Role::Admin, Duration::from_secs(30 * 24 * 3600))?;
        let (private, _) = fleetstream_api::auth::generated_paths(&config.data_dir);
        eprintln!(
            "auth: {} key pair in {}; admin token (30 days):\n{token}",
            if created { "created a" } else { "using the" },
            private.parent().unwrap_or(Path::new(".")).display()
        );
    }
    let api = api(config, engine, stores, keys, ready)?;
    let listener = tokio::net::TcpListener::bind(&config.api.addr)
        .await
        .with_context(|| format!("binding the edge API to {}", config.api.addr))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(fleetstream_api::serve(api, listener, async move {
        let _ = stopped.await;
    }));
    eprintln!("edge API on http://{addr} (dashboard at /, OpenAPI at /openapi.json)");
    Ok(Edge { addr, stop, task })
}
