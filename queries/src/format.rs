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
