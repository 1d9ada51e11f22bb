//! Query results as text: a terminal table, CSV with a header, or JSON (one array of objects).

use arrow::array::RecordBatch;
use arrow::error::ArrowError;

use crate::QueryOutput;

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format {other:?} (table, csv or json)")),
        }
    }
}

/// The rows in `format`.
pub fn render(output: &QueryOutput, format: Format) -> Result<Vec<u8>, ArrowError> {
    let batches: Vec<RecordBatch> = if output.batches.is_empty() {
        vec![RecordBatch::new_empty(output.schema.clone())]
    } else {
        output.batches.clone()
    };
    match format {
        Format::Table => {
            let mut text = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
            text.push('\n');
            Ok(text.into_bytes())
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                for batch in &batches {
                    writer.write(batch)?;
                }
            }
            Ok(out)
        }
        Format::Json => {
            // Money stays exact: decimals are written as strings ("12.35"), never as numbers.
            let batches = batches
                .iter()
                .map(decimals_as_strings)
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::new();
            {
                let mut writer = arrow::json::ArrayWriter::new(&mut out);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                writer.write_batches(&refs)?;
                writer.finish()?;
            }
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
            Ok(out)
        }
    }
}

/// The batch with every decimal column cast to its exact text.
pub fn decimals_as_strings(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Decimal128(..) | DataType::Decimal256(..)))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if matches!(
            field.data_type(),
            DataType::Decimal128(..) | DataType::Decimal256(..)
        ) {
            columns.push(arrow::compute::cast(column, &DataType::Utf8)?);
            fields.push(Arc::new(Field::new(
                field.name(),
                DataType::Utf8,
                field.is_nullable(),
            )));
        } else {
            columns.push(column.clone());
            fields.push(field.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
