//! The sinks' result tables as SQL tables: `trip_events`, `ledger_entries`, `overtime_records`,
//! `driver_positions`, in the same Arrow schemas whether they come from the Parquet folders or
//! from ClickHouse.
//!
//! ClickHouse tables push their work down: the projection, the filters that translate to
//! ClickHouse SQL (comparisons of a column with a constant, `IN`, `IS NULL`, `LIKE`, `AND`/`OR`)
//! and, when every filter went down, the `LIMIT` become one `SELECT ... FINAL` run by ClickHouse
//! (`FINAL` collapses the copies a retried batch may have left). Other filters run in
//! DataFusion over the rows ClickHouse returns.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder, ListBuilder,
    RecordBatch, StringBuilder, TimestampMillisecondBuilder, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{BinaryExpr, Expr, Like, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;
use fleetstream_sinks::Table;
use fleetstream_sinks::batches::schema;
use fleetstream_sinks::clickhouse::ClickHouseOptions;

/// A result table over the Parquet sink's folder (`<dir>/<table>/dt=<day>/*.parquet`); empty
/// while the folder does not exist.
pub fn parquet_table(dir: &Path, table: Table) -> Result<Arc<dyn TableProvider>> {
    let folder = dir.join(table.name());
    if !folder.is_dir() {
        return Ok(Arc::new(MemTable::try_new(schema(table), vec![vec![]])?));
    }
    let url = ListingTableUrl::parse(format!("{}/", folder.display()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("dt".to_string(), DataType::Utf8)]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema(table));
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// A result table in ClickHouse.
#[derive(Debug)]
pub struct ClickHouseTable {
    options: ClickHouseOptions,
    table: Table,
    schema: SchemaRef,
}

impl ClickHouseTable {
    pub fn new(options: ClickHouseOptions, table: Table) -> Self {
        ClickHouseTable {
            options,
            table,
            schema: schema(table),
        }
    }

    /// The table's column a field is read from.
    fn source_column(field: &Field) -> String {
        match field.data_type() {
            DataType::Timestamp(..) => format!("{}_ms", field.name()),
            _ => field.name().to_string(),
        }
    }

    /// The ClickHouse expression that yields a field in its Arrow type's JSON form, over the
    /// source column.
    fn select_expr(field: &Field) -> String {
        let name = field.name();
        match field.data_type() {
            DataType::Timestamp(..) => format!("{name}_ms AS {name}"),
            DataType::Decimal128(..) | DataType::Date32 => format!("toString({name}) AS {name}"),
            _ => name.to_string(),
        }
    }

    /// The SQL ClickHouse runs for a scan. The filters and the limit apply in an inner
    /// `SELECT ... FINAL` over the table's own columns, and the conversions for the JSON form in
    /// the outer one: ClickHouse lets a `SELECT` alias shadow a column in `WHERE`, so
    /// `toString(amount) AS amount` beside `WHERE amount > 0` would compare a string.
    pub fn query(&self, projection: Option<&Vec<usize>>, filters: &[String], limit: Option<usize>) -> String {
        let fields: Vec<&Field> = match projection {
            Some(p) => p.iter().map(|i| self.schema.field(*i)).collect(),
            None => self.schema.fields().iter().map(|f| f.as_ref()).collect(),
        };
        let (outer, inner) = if fields.is_empty() {
            ("_one".to_string(), "1 AS _one".to_string())
        } else {
            let list = |f: fn(&Field) -> String| fields.iter().map(|x| f(x)).collect::<Vec<_>>().join(", ");
            (list(Self::select_expr), list(Self::source_column))
        };
        let mut sql = format!(
            "SELECT {outer} FROM (SELECT {inner} FROM {}.{} FINAL",
            self.options.database,
            self.table.name()
        );
        if !filters.is_empty() {
            sql.push_str(&format!(" WHERE {}", filters.join(" AND ")));
        }
        if let Some(limit) = limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        sql.push(')');
        sql
    }

    /// The filter in ClickHouse SQL, if it translates exactly.
    pub fn translate(&self, expr: &Expr) -> Option<String> {
        match expr {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: op @ (Operator::And | Operator::Or),
                right,
            }) => {
                let word = if *op == Operator::And { "AND" } else { "OR" };
                Some(format!(
                    "({} {word} {})",
                    self.translate(left)?,
                    self.translate(right)?
                ))
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let op = match op {
                    Operator::Eq => "=",
                    Operator::NotEq => "!=",
                    Operator::Lt => "<",
                    Operator::LtEq => "<=",
                    Operator::Gt => ">",
                    Operator::GtEq => ">=",
                    _ => return None,
                };
                match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) => {
                        let (column, value) = self.comparable(&c.name, v)?;
                        Some(format!("{column} {op} {value}"))
                    }
                    (Expr::Literal(v, _), Expr::Column(c)) => {
                        let (column, value) = self.comparable(&c.name, v)?;
                        Some(format!("{value} {op} {column}"))
                    }
                    _ => None,
                }
            }
            Expr::InList(list) => {
                let Expr::Column(c) = list.expr.as_ref() else {
                    return None;
                };
                let mut values = Vec::new();
                let mut column = String::new();
                for e in &list.list {
                    let Expr::Literal(v, _) = e else { return None };
                    let (col, value) = self.comparable(&c.name, v)?;
                    column = col;
                    values.push(value);
                }
                if values.is_empty() {
                    return None;
                }
                let not = if list.negated { "NOT " } else { "" };
                Some(format!("{column} {not}IN ({})", values.join(", ")))
            }
            Expr::IsNull(e) | Expr::IsNotNull(e) => {
                let Expr::Column(c) = e.as_ref() else { return None };
                self.schema.field_with_name(&c.name).ok()?;
                let f = if matches!(expr, Expr::IsNull(_)) {
                    "isNull"
                } else {
                    "isNotNull"
                };
                Some(format!("{f}({})", c.name))
            }
            Expr::Like(Like {
                negated,
                expr,
                pattern,
                escape_char: None,
                case_insensitive: false,
            }) => {
                let (Expr::Column(c), Expr::Literal(ScalarValue::Utf8(Some(p)), _)) =
                    (expr.as_ref(), pattern.as_ref())
                else {
                    return None;
                };
                if self.schema.field_with_name(&c.name).ok()?.data_type() != &DataType::Utf8 {
                    return None;
                }
                let not = if *negated { "NOT " } else { "" };
                Some(format!("{} {not}LIKE {}", c.name, quote(p)))
            }
            _ => None,
        }
    }

    /// A column and a constant as ClickHouse compares them, when their types allow it.
    fn comparable(&self, column: &str, value: &ScalarValue) -> Option<(String, String)> {
        let field = self.schema.field_with_name(column).ok()?;
        match (field.data_type(), value) {
            (
                DataType::Utf8,
                ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
            ) => Some((column.to_string(), quote(s))),
            (DataType::Float64 | DataType::Int64 | DataType::UInt32, v) => {
                let number = match v {
                    ScalarValue::Float64(Some(x)) if x.is_finite() => x.to_string(),
                    ScalarValue::Int64(Some(x)) => x.to_string(),
                    ScalarValue::Int32(Some(x)) => x.to_string(),
                    ScalarValue::UInt32(Some(x)) => x.to_string(),
                    ScalarValue::UInt64(Some(x)) => x.to_string(),
                    _ => return None,
                };
                Some((column.to_string(), number))
            }
            (DataType::Timestamp(..), v) => {
                let ms = match v {
                    ScalarValue::TimestampMillisecond(Some(x), _) => *x,
                    ScalarValue::TimestampSecond(Some(x), _) => x.checked_mul(1000)?,
                    ScalarValue::TimestampMicrosecond(Some(x), _) if x % 1000 == 0 => x / 1000,
                    ScalarValue::TimestampNanosecond(Some(x), _) if x % 1_000_000 == 0 => x / 1_000_000,
                    _ => return None,
                };
                Some((format!("{column}_ms"), ms.to_string()))
            }
            (DataType::Date32, ScalarValue::Date32(Some(days))) => {
                let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?
                    .checked_add_signed(chrono::Duration::days(i64::from(*days)))?;
                Some((column.to_string(), format!("toDate('{date}')")))
            }
            (DataType::Decimal128(_, scale), ScalarValue::Decimal128(Some(v), _, s)) if s == scale => {
                let d = rust_decimal::Decimal::from_i128_with_scale(*v, *s as u32);
                Some((column.to_string(), format!("toDecimal64('{d}', {scale})")))
            }
            _ => None,
        }
    }
}

/// A ClickHouse string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[async_trait]
impl TableProvider for ClickHouseTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.translate(f).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let translated: Option<Vec<String>> = filters.iter().map(|f| self.translate(f)).collect();
        let translated = translated.ok_or_else(|| {
            DataFusionError::Internal("a filter that cannot run in ClickHouse was pushed".into())
        })?;
        let sql = self.query(projection, &translated, limit);
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let client = self.options.client();
        let bytes = client
            .query(&sql)
            .fetch_bytes("JSONEachRow")
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .collect()
            .await
            .map_err(|e| DataFusionError::Execution(format!("ClickHouse: {e} (query: {sql})")))?;
        let batch = json_rows(&projected, &bytes)?;
        let source =
            datafusion::datasource::memory::MemorySourceConfig::try_new(&[vec![batch]], projected, None)?;
        Ok(datafusion::datasource::source::DataSourceExec::from_data_source(
            source,
        ))
    }
}

/// Rows of `JSONEachRow` as a batch in `schema` (decimals and dates come as strings,
/// timestamps as milliseconds, booleans as 0/1).
pub fn json_rows(schema: &SchemaRef, bytes: &[u8]) -> Result<RecordBatch> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| DataFusionError::Execution(format!("ClickHouse sent non-UTF-8: {e}")))?;
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| DataFusionError::Execution(format!("ClickHouse sent unreadable JSON: {e}")))?;
    if schema.fields().is_empty() {
        return Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| column(f, &rows))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn column(field: &Field, rows: &[serde_json::Map<String, serde_json::Value>]) -> Result<ArrayRef> {
    use serde_json::Value;
    let name = field.name();
    let values = rows.iter().map(|r| r.get(name).filter(|v| !v.is_null()));
    let bad = |v: &Value| {
        DataFusionError::Execution(format!("ClickHouse sent {v} for {name} ({})", field.data_type()))
    };
    let number =
        |v: &Value| -> Option<f64> { v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) };
    let integer =
        |v: &Value| -> Option<i64> { v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) };
    Ok(match field.data_type() {
        DataType::Utf8 => {
            let mut b = StringBuilder::new();
            for v in values {
                b.append_option(v.map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())));
            }
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::new();
            for v in values {
                b.append_option(v.map(|v| number(v).ok_or_else(|| bad(v))).transpose()?);
            }
            Arc::new(b.finish())
        }
        DataType::Int64 => {
            let mut b = Int64Builder::new();
            for v in values {
                b.append_option(v.map(|v| integer(v).ok_or_else(|| bad(v))).transpose()?);
            }
            Arc::new(b.finish())
        }
        DataType::UInt32 => {
            let mut b = UInt32Builder::new();
            for v in values {
                b.append_option(
                    v.map(|v| {
                        integer(v)
                            .and_then(|i| u32::try_from(i).ok())
                            .ok_or_else(|| bad(v))
                    })
                    .transpose()?,
                );
            }
            Arc::new(b.finish())
        }
        DataType::Boolean => {
            let mut b = BooleanBuilder::new();
            for v in values {
                b.append_option(
                    v.map(|v| {
                        v.as_bool()
                            .or_else(|| integer(v).map(|i| i != 0))
                            .ok_or_else(|| bad(v))
                    })
                    .transpose()?,
                );
            }
            Arc::new(b.finish())
        }
        DataType::Timestamp(TimeUnit::Millisecond, tz) => {
            let mut b = TimestampMillisecondBuilder::new().with_timezone_opt(tz.clone());
            for v in values {
                b.append_option(v.map(|v| integer(v).ok_or_else(|| bad(v))).transpose()?);
            }
            Arc::new(b.finish())
        }
        DataType::Date32 => {
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
            let mut b = Date32Builder::new();
            for v in values {
                let day = v
                    .map(|v| {
                        v.as_str()
                            .and_then(|s| s.parse::<chrono::NaiveDate>().ok())
                            .map(|d| (d - epoch).num_days() as i32)
                            .ok_or_else(|| bad(v))
                    })
                    .transpose()?;
                b.append_option(day);
            }
            Arc::new(b.finish())
        }
        DataType::Decimal128(precision, scale) => {
            let mut b = Decimal128Builder::new().with_precision_and_scale(*precision, *scale)?;
            for v in values {
                let d = v
                    .map(|v| {
                        let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                        let mut d: rust_decimal::Decimal = text.parse().map_err(|_| bad(v))?;
                        d.rescale(*scale as u32);
                        Ok::<_, DataFusionError>(d.mantissa())
                    })
                    .transpose()?;
                b.append_option(d);
            }
            Arc::new(b.finish())
        }
        DataType::List(item) if item.data_type() == &DataType::Utf8 => {
            let mut b = ListBuilder::new(StringBuilder::new()).with_field(item.clone());
            for v in values {
                match v {
                    Some(Value::Array(items)) => {
                        for item in items {
                            b.values().append_option(item.as_str());
                        }
                        b.append(true);
                    }
                    Some(v) => return Err(bad(v)),
                    None => b.append(false),
                }
            }
            Arc::new(b.finish())
        }
        other => {
            return Err(DataFusionError::NotImplemented(format!(
                "reading {other} columns from ClickHouse"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn ledger() -> ClickHouseTable {
        let options = ClickHouseOptions {
            url: "http://ch:8123".into(),
            database: "fs".into(),
            user: None,
            password: None,
        };
        ClickHouseTable::new(options, Table::LedgerEntries)
    }

    #[test]
    fn filters_translate_to_clickhouse_sql_or_stay_in_datafusion() {
        let t = ledger();
        assert_eq!(
            t.translate(&col("account_id").eq(lit("rider:r1"))).as_deref(),
            Some("account_id = 'rider:r1'")
        );
        assert_eq!(
            t.translate(&col("kind").in_list(vec![lit("fare"), lit("it's")], false))
                .as_deref(),
            Some("kind IN ('fare', 'it\\'s')")
        );
        assert_eq!(
            t.translate(&col("ts").gt_eq(lit(ScalarValue::TimestampMillisecond(
                Some(1_700_000_000_000),
                None
            ))))
            .as_deref(),
            Some("ts_ms >= 1700000000000")
        );
        assert_eq!(
            t.translate(&col("trip_id").is_null()).as_deref(),
            Some("isNull(trip_id)")
        );
        // Functions and unknown columns stay in DataFusion.
        assert_eq!(
            t.translate(&datafusion::functions::expr_fn::lower(col("kind")).eq(lit("fare"))),
            None
        );
        assert_eq!(t.translate(&col("nope").eq(lit(1))), None);
    }

    #[test]
    fn the_query_filters_the_table_with_final_and_converts_outside() {
        let t = ledger();
        let sql = t.query(Some(&vec![0, 3, 6]), &["account_id = 'a'".to_string()], Some(10));
        assert_eq!(
            sql,
            "SELECT entry_id, toString(amount) AS amount, ts_ms AS ts FROM \
             (SELECT entry_id, amount, ts_ms FROM fs.ledger_entries FINAL WHERE account_id = 'a' LIMIT 10)"
        );
    }

    #[test]
    fn json_rows_decode_into_the_arrow_schema() {
        let schema = schema(Table::OvertimeRecords);
        let bytes = br#"{"employee_id":"e1","period":"day","period_start":"2026-11-02","worked_minutes":480,"regular_minutes":480,"ot_150_minutes":0,"ot_200_minutes":0,"weekly_ot_minutes":0,"night_minutes":0,"holiday_minutes":0,"flags":["short_rest"],"version":3,"final":1,"event_id":"x"}"#;
        let batch = json_rows(&schema, bytes).unwrap();
        assert_eq!(batch.num_rows(), 1);
        let text = arrow::util::pretty::pretty_format_batches(&[batch])
            .unwrap()
            .to_string();
        assert!(
            text.contains("2026-11-02") && text.contains("[short_rest]") && text.contains("true"),
            "{text}"
        );
    }
}
