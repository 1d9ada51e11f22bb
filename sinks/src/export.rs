//! Overtime exports for HR and accounting: one row per employee and period, as CSV (hours with
//! two decimals, a header, `;`-separated flags) or Parquet.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Date32Array, Decimal128Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use fleetstream_schemas::OvertimeRecord;
use fleetstream_schemas::money::round2;
use rust_decimal::Decimal;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use fleetstream_schemas::Period;
use fleetstream_topology::TopicPartition;
use fleetstream_topology::log::Membership;

use crate::SinkError;

/// The export file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
    Parquet,
}

/// The export columns, in order.
pub const COLUMNS: [&str; 12] = [
    "employee_id",
    "period",
    "period_start",
    "worked",
    "regular",
    "ot_150",
    "ot_200",
    "weekly_ot",
    "night",
    "holiday",
    "flags",
    "final",
];

/// Minutes as hours with two decimals, half away from zero.
pub fn hours(minutes: i64) -> Decimal {
    let mut h = round2(Decimal::from(minutes) / Decimal::from(60));
    h.rescale(2);
    h
}

fn figures(r: &OvertimeRecord) -> [i64; 7] {
    [
        r.worked_minutes,
        r.regular_minutes,
        r.ot_150_minutes,
        r.ot_200_minutes,
        r.weekly_ot_minutes,
        r.night_minutes,
        r.holiday_minutes,
    ]
}

fn flags(r: &OvertimeRecord) -> String {
    r.flags.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(";")
}

fn csv_field(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// Writes the records in the given format.
pub fn write_overtime(
    records: &[OvertimeRecord],
    format: ExportFormat,
    mut out: impl Write + Send,
) -> Result<(), SinkError> {
    match format {
        ExportFormat::Csv => {
            let mut text = COLUMNS.join(",");
            text.push('\n');
            for r in records {
                csv_field(&mut text, &r.employee_id);
                text.push(',');
                text.push_str(r.period.as_str());
                text.push(',');
                text.push_str(&r.period_start.to_string());
                for minutes in figures(r) {
                    text.push(',');
                    text.push_str(&hours(minutes).to_string());
                }
                text.push(',');
                csv_field(&mut text, &flags(r));
                text.push(',');
                text.push_str(if r.is_final { "true" } else { "false" });
                text.push('\n');
            }
            out.write_all(text.as_bytes()).map_err(|e| SinkError::Io {
                target: "export".into(),
                source: e,
            })?;
            out.flush().map_err(|e| SinkError::Io {
                target: "export".into(),
                source: e,
            })
        }
        ExportFormat::Parquet => {
            let batch = overtime_batch(records)?;
            let mut writer =
                parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).map_err(|e| {
                    SinkError::Parquet {
                        detail: e.to_string(),
                    }
                })?;
            writer.write(&batch).map_err(|e| SinkError::Parquet {
                detail: e.to_string(),
            })?;
            writer.close().map_err(|e| SinkError::Parquet {
                detail: e.to_string(),
            })?;
            Ok(())
        }
    }
}

/// The export as an Arrow batch: hours as `Decimal128(12, 2)`.
pub fn overtime_batch(records: &[OvertimeRecord]) -> Result<RecordBatch, SinkError> {
    let hours_type = DataType::Decimal128(12, 2);
    let mut fields = vec![
        Field::new("employee_id", DataType::Utf8, false),
        Field::new("period", DataType::Utf8, false),
        Field::new("period_start", DataType::Date32, false),
    ];
    for name in &COLUMNS[3..10] {
        fields.push(Field::new(*name, hours_type.clone(), false));
    }
    fields.push(Field::new("flags", DataType::Utf8, false));
    fields.push(Field::new("final", DataType::Boolean, false));
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.employee_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.period.as_str()),
        )),
        Arc::new(Date32Array::from_iter_values(
            records.iter().map(|r| (r.period_start - epoch).num_days() as i32),
        )),
    ];
    for i in 0..7 {
        let values = records.iter().map(|r| hours(figures(r)[i]).mantissa());
        let array = Decimal128Array::from_iter_values(values)
            .with_precision_and_scale(12, 2)
            .map_err(|e| SinkError::Parquet {
                detail: e.to_string(),
            })?;
        columns.push(Arc::new(array));
    }
    columns.push(Arc::new(StringArray::from_iter_values(records.iter().map(flags))));
    columns.push(Arc::new(BooleanArray::from_iter(
        records.iter().map(|r| Some(r.is_final)),
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| SinkError::Parquet {
        detail: e.to_string(),
    })
}

/// The latest version of every window starting within `[from, to]`, in key order.
pub fn latest_records(
    log: &dyn fleetstream_topology::log::Log,
    topic: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<OvertimeRecord>, SinkError> {
    let partitions = match log.partitions(topic) {
        Ok(n) => n,
        Err(fleetstream_topology::LogError::UnknownTopic { .. }) => return Ok(Vec::new()),
        Err(e) => {
            return Err(SinkError::Log {
                detail: e.to_string(),
            });
        }
    };
    let mut latest: BTreeMap<(String, Period, NaiveDate), OvertimeRecord> = BTreeMap::new();
    for partition in 0..partitions {
        let tp = TopicPartition::new(topic, partition);
        let end = log.end_offset(&tp).map_err(|e| SinkError::Log {
            detail: e.to_string(),
        })?;
        let mut consumer = log.consumer(Membership::Manual).map_err(|e| SinkError::Log {
            detail: e.to_string(),
        })?;
        consumer.assign(&[(tp.clone(), 0)]).map_err(|e| SinkError::Log {
            detail: e.to_string(),
        })?;
        let mut position = 0;
        while position < end {
            let fetched = consumer
                .poll(10_000, Duration::from_millis(200))
                .map_err(|e| SinkError::Log {
                    detail: e.to_string(),
                })?;
            if fetched.is_empty() {
                break;
            }
            for record in fetched.into_iter().flat_map(|f| f.records) {
                position = record.offset + 1;
                let Some(value) = record.value else { continue };
                let r: OvertimeRecord =
                    serde_json::from_slice(&value).map_err(|e| SinkError::Undecodable {
                        table: "overtime_records",
                        detail: e.to_string(),
                    })?;
                if r.period_start < from || r.period_start > to {
                    continue;
                }
                let key = (r.employee_id.clone(), r.period, r.period_start);
                if latest.get(&key).is_none_or(|old| old.version < r.version) {
                    latest.insert(key, r);
                }
            }
        }
    }
    Ok(latest.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetstream_schemas::{OvertimeFlag, Period};

    fn record() -> OvertimeRecord {
        OvertimeRecord {
            employee_id: "E1".into(),
            period: Period::Day,
            period_start: "2026-10-20".parse().unwrap(),
            worked_minutes: 697,
            regular_minutes: 480,
            ot_150_minutes: 120,
            ot_200_minutes: 97,
            weekly_ot_minutes: 0,
            night_minutes: 460,
            holiday_minutes: 0,
            flags: vec![OvertimeFlag::ShortRest, OvertimeFlag::OpenBreak],
            version: 3,
            is_final: true,
            event_id: "x".into(),
        }
    }

    #[test]
    fn csv_has_a_header_and_hours_with_two_decimals() {
        let mut out = Vec::new();
        write_overtime(&[record()], ExportFormat::Csv, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], COLUMNS.join(","));
        assert_eq!(
            lines[1],
            "E1,day,2026-10-20,11.62,8.00,2.00,1.62,0.00,7.67,0.00,short_rest;open_break,true"
        );
    }

    #[test]
    fn parquet_round_trips() {
        let mut out = Vec::new();
        write_overtime(&[record(), record()], ExportFormat::Parquet, &mut out).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(out))
                .unwrap()
                .build()
                .unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 2);
    }
}
