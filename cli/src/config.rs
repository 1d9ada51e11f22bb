//! The one configuration of the binary: defaults, then the TOML file, then `FLEETSTREAM_*`
//! environment variables (`__` separates sections: `FLEETSTREAM_KAFKA__BROKERS`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use fleetstream_operators::config::{JobConfig, MatchingConfig, OvertimeConfig, Tariff};
use fleetstream_topology::log::kafka::{KafkaOptions, Transactions};
use fleetstream_topology::{EngineConfig, Guarantee};
use serde::{Deserialize, Serialize};

/// The stream threads' default `thread_nice`.
pub const DEFAULT_THREAD_NICE: u8 = 0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// Consumer group and prefix of internal topics.
    pub app_id: String,
    /// Prefixed to every topic name, so that several deployments share one cluster.
    pub topic_prefix: String,
    /// Where the embedded log, RocksDB state and keys live.
    pub data_dir: PathBuf,
    /// Partitions of the topics fleetstream creates.
    pub partitions: u32,
    pub log: LogConfig,
    /// Set `brokers` to run on Kafka instead of the embedded log.
    pub kafka: KafkaConfig,
    pub processing: ProcessingConfig,
    pub api: ApiConfig,
    pub auth: AuthConfig,
    pub sinks: SinksConfig,
    pub sql: SqlConfig,
    pub matching: MatchingConfig,
    pub tariff: BTreeMap<String, Tariff>,
    pub overtime: OvertimeConfig,
}

impl Default for AppConfig {
    fn default() -> Self {
        let jobs = JobConfig::default();
        AppConfig {
            app_id: "fleetstream".into(),
            topic_prefix: String::new(),
            data_dir: PathBuf::from("./data"),
            partitions: 4,
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            processing: ProcessingConfig::default(),
            api: ApiConfig::default(),
            auth: AuthConfig::default(),
            sinks: SinksConfig::default(),
            sql: SqlConfig::default(),
            matching: jobs.matching,
            tariff: jobs.tariff,
            overtime: jobs.overtime,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `fsync` every commit of the embedded log.
    pub fsync: bool,
    pub segment_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            fsync: false,
            segment_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`; empty means the embedded log.
    pub brokers: String,
    /// Partitions of topics fleetstream creates on Kafka (defaults to `partitions`).
    pub partitions: Option<u32>,
    /// Replication factor of topics fleetstream creates.
    pub replication_factor: Option<i32>,
    /// `auto` (use transactions when the broker offers them), `required` or `off`.
    pub transactions: Option<Transactions>,
    /// Extra librdkafka properties.
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessingConfig {
    pub guarantee: Guarantee,
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a caught-up stream thread waits for more records before it commits (the
    /// latency each hop through a topic may add under light load). Defaults to 500 µs on the
    /// embedded log and 5 ms on Kafka, where a commit is a round trip to the brokers.
    #[serde(with = "humantime_serde")]
    pub commit_linger: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    pub threads: u32,
    /// How much nicer (0-19) the stream threads run than the rest of the process, so that the
    /// edge API, queries and sinks answer promptly while the threads work through a backlog.
    pub thread_nice: u8,
    /// Warm copies of other instances' tasks (Kafka only).
    pub standby_replicas: u32,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        let engine = EngineConfig::default();
        ProcessingConfig {
            guarantee: engine.guarantee,
            commit_interval: engine.commit_interval,
            commit_linger: None,
            checkpoint_interval: engine.checkpoint_interval,
            threads: 1,
            thread_nice: DEFAULT_THREAD_NICE,
            standby_replicas: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the edge API listens; empty disables it.
    pub addr: String,
    /// How other instances reach this one (query forwarding).
    pub advertised_url: Option<String>,
    /// Requests per second per client (GCRA); more are answered 429 with Retry-After.
    pub rate_limit: u32,
    /// Requests a client may send at once above the rate.
    pub burst: u32,
    /// Records in one batch command (`POST /v1/gps`, `POST /v1/timesheets/punches`).
    pub max_batch: usize,
}

impl ApiConfig {
    /// The address other instances forward queries to: the configured one, else the listen
    /// address when it names a host.
    pub fn advertised_url(&self) -> Option<String> {
        if let Some(url) = &self.advertised_url {
            return Some(url.trim_end_matches('/').to_string());
        }
        let addr = self.addr.trim();
        let wildcard = addr.starts_with("0.0.0.0") || addr.starts_with("[::]");
        (!addr.is_empty() && !wildcard).then(|| format!("http://{addr}"))
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            addr: "127.0.0.1:8080".into(),
            advertised_url: None,
            rate_limit: 1_000,
            burst: 2_000,
            max_batch: 10_000,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// PEM public key that verifies RS256 tokens.
    pub public_key_file: Option<PathBuf>,
    /// PEM private key for `fleetstream token` (dev).
    pub private_key_file: Option<PathBuf>,
}

/// The SQL engine (`fleetstream sql`, `POST /v1/sql`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlConfig {
    /// Rows a query returns at most (more are cut, and the answer says so).
    pub max_rows: usize,
    /// Longest a query may run.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// UDF plugins (`*.so` built with `arroyo-udf-plugin`) loaded at start.
    pub plugins_dir: Option<PathBuf>,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            max_rows: 10_000,
            timeout: Duration::from_secs(30),
            plugins_dir: None,
        }
    }
}

impl SqlConfig {
    pub fn limits(&self) -> fleetstream_queries::Limits {
        fleetstream_queries::Limits {
            max_rows: self.max_rows.max(1),
            timeout: self.timeout,
        }
    }
}

/// Where results land. With none configured, an embedded run writes Parquet tables under
/// `<data_dir>/tables` (what `fleetstream sql` and the SQL endpoint read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinksConfig {
    pub postgres: Option<PostgresSink>,
    pub clickhouse: Option<ClickHouseSink>,
    pub parquet: Option<ParquetSink>,
    /// Rows per write, at most.
    pub batch_records: usize,
    /// Longest wait before a partial batch is written (PostgreSQL, ClickHouse).
    #[serde(with = "humantime_serde")]
    pub batch_interval: Duration,
    /// Longest wait between retries while a database is down.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for SinksConfig {
    fn default() -> Self {
        SinksConfig {
            postgres: None,
            clickhouse: None,
            parquet: None,
            batch_records: 5_000,
            batch_interval: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSink {
    pub url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSink {
    pub url: String,
    #[serde(default = "default_clickhouse_database")]
    pub database: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

fn default_clickhouse_database() -> String {
    "fleetstream".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParquetSink {
    /// Default `<data_dir>/tables`.
    pub dir: Option<PathBuf>,
    /// Files are written at least this often (fewer, larger files when longer).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
}

impl Default for ParquetSink {
    fn default() -> Self {
        ParquetSink {
            dir: None,
            flush_interval: Duration::from_secs(10),
        }
    }
}

impl AppConfig {
    /// Defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<AppConfig> {
        let mut figment = Figment::from(Serialized::defaults(AppConfig::default()));
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        // `FLEETSTREAM_TEST_*` name the test servers, not configuration.
        let env = Env::prefixed("FLEETSTREAM_")
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
            .split("__");
        figment = figment.merge(env);
        let config: AppConfig = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        config
            .jobs()
            .validate()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        if config.partitions == 0 {
            anyhow::bail!("configuration: partitions must be at least 1");
        }
        if config.processing.thread_nice > 19 {
            anyhow::bail!(
                "configuration: processing.thread_nice must be between 0 and 19, not {}",
                config.processing.thread_nice
            );
        }
        Ok(config)
    }

    pub fn jobs(&self) -> JobConfig {
        JobConfig {
            topic_prefix: self.topic_prefix.clone(),
            matching: self.matching.clone(),
            tariff: self.tariff.clone(),
            overtime: self.overtime.clone(),
        }
    }

    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            partitions: self.kafka.partitions.unwrap_or(self.partitions),
            threads: self.processing.threads.max(1),
            thread_nice: self.processing.thread_nice,
            guarantee: self.processing.guarantee,
            commit_interval: self.processing.commit_interval,
            commit_linger: self.processing.commit_linger.unwrap_or(if self.uses_kafka() {
                Duration::from_millis(5)
            } else {
                Duration::from_micros(500)
            }),
            checkpoint_interval: self.processing.checkpoint_interval,
            create_source_topics: true,
            instance_id: instance_id(),
            advertised_url: self.api.advertised_url(),
            ..EngineConfig::default()
        }
    }

    /// How to reach Kafka, when configured.
    pub fn kafka_options(&self) -> KafkaOptions {
        let mut options = KafkaOptions::new(self.kafka.brokers.trim(), &self.app_id);
        options.replication_factor = self.kafka.replication_factor.unwrap_or(1);
        options.transactions = match (self.kafka.transactions, self.processing.guarantee) {
            (Some(mode), _) => mode,
            (None, Guarantee::AtLeastOnce) => Transactions::Off,
            (None, Guarantee::ExactlyOnce) => Transactions::Auto,
        };
        options.properties = self.kafka.properties.clone();
        options
    }

    pub fn uses_kafka(&self) -> bool {
        !self.kafka.brokers.trim().is_empty()
    }

    /// The result tables' sources for SQL: the Parquet folder and ClickHouse, as configured.
    pub fn query_sources(&self) -> fleetstream_queries::Sources {
        fleetstream_queries::Sources {
            stores: None,
            parquet_dir: Some(self.parquet_dir()),
            clickhouse: self.sinks.clickhouse.as_ref().map(|ch| {
                fleetstream_sinks::clickhouse::ClickHouseOptions {
                    url: ch.url.clone(),
                    database: ch.database.clone(),
                    user: ch.user.clone(),
                    password: ch.password.clone(),
                }
            }),
            plugins_dir: self.sql.plugins_dir.clone(),
        }
    }

    /// The folder of the Parquet tables (configured, or the default under the data directory).
    pub fn parquet_dir(&self) -> PathBuf {
        self.sinks
            .parquet
            .as_ref()
            .and_then(|p| p.dir.clone())
            .unwrap_or_else(|| self.data_dir.join("tables"))
    }

    /// The Parquet sink to run: the configured one, or the embedded default when no sink is
    /// configured.
    pub fn parquet_sink(&self) -> Option<ParquetSink> {
        match &self.sinks.parquet {
            Some(p) => Some(p.clone()),
            None if !self.uses_kafka()
                && self.sinks.postgres.is_none()
                && self.sinks.clickhouse.is_none() =>
            {
                Some(ParquetSink::default())
            }
            None => None,
        }
    }

    pub fn ensure_data_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating the data directory {}", self.data_dir.display()))
    }
}

/// This instance's name among the group's members: the host name and process id.
fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "host".into());
    format!("{}-{}", host.trim(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_without_a_file() {
        let config = AppConfig::load(None).unwrap();
        assert_eq!(config.app_id, "fleetstream");
        assert!(!config.uses_kafka());
    }

    #[test]
    fn the_deployment_config_parses() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "app_id = \"x\"\ndata_dir = \"/tmp/x\"\n[kafka]\nbrokers = \"k:9092\"\npartitions = 12\n[processing]\nguarantee = \"exactly_once\"\ncommit_interval = \"100ms\"\n[api]\naddr = \"0.0.0.0:8080\"\n[sinks.postgres]\nurl = \"postgres://a@b/c\"\n[sinks.clickhouse]\nurl = \"http://ch:8123\"\ndatabase = \"fleetstream\"\n[auth]\npublic_key_file = \"/k.pem\"\n[overtime]\ntimezone = \"Europe/Berlin\"\n",
        )
        .unwrap();
        let config = AppConfig::load(Some(&file)).unwrap();
        assert!(config.uses_kafka());
        assert_eq!(config.engine().partitions, 12);
        assert_eq!(config.overtime.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(
            config.engine().commit_linger,
            Duration::from_millis(5),
            "Kafka's default"
        );
    }

    #[test]
    fn commit_linger_defaults_by_log_and_can_be_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let embedded = AppConfig::load(None).unwrap();
        assert_eq!(embedded.engine().commit_linger, Duration::from_micros(500));
        std::fs::write(&file, "[processing]\ncommit_linger = \"2ms\"\n").unwrap();
        let set = AppConfig::load(Some(&file)).unwrap();
        assert_eq!(set.engine().commit_linger, Duration::from_millis(2));
        std::fs::write(&file, "[processing]\ncommit_linger = \"soon\"\n").unwrap();
        let err = AppConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("commit_linger"), "{err}");
    }

    #[test]
    fn thread_nice_is_checked_and_reaches_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let defaults = AppConfig::load(None).unwrap();
        assert_eq!(defaults.engine().thread_nice, DEFAULT_THREAD_NICE);
        std::fs::write(&file, "[processing]\nthread_nice = 7\n").unwrap();
        assert_eq!(AppConfig::load(Some(&file)).unwrap().engine().thread_nice, 7);
        std::fs::write(&file, "[processing]\nthread_nice = 20\n").unwrap();
        let err = AppConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(
            err.contains("processing.thread_nice must be between 0 and 19"),
            "{err}"
        );
        std::fs::write(&file, "[processing]\nthread_nice = -1\n").unwrap();
        let err = AppConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("thread_nice"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[matching]\nradius = 3\n").unwrap();
        let err = AppConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("radius"), "{err}");
    }
}
