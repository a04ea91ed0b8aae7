//! The tables as Parquet too (`hourly_entries.parquet`, `od_matrix.parquet`), beside the CSV
//! files and with the same columns and values: text columns as UTF-8 strings (the timestamp
//! keeps its local offset, as in the CSV), counts as INT64. Written with the `parquet` crate's
//! low-level writer (no Arrow, no compression codecs), in row groups of at most
//! [`ROW_GROUP_ROWS_MAX`] rows, so memory stays bounded whatever the table's length.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{Type, TypePtr};

/// Rows buffered before a row group is written: 64 Ki rows of a few short strings is a few MB.
pub const ROW_GROUP_ROWS_MAX: usize = 65_536;

/// A column's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Count,
}

/// A Parquet table written row by row.
pub struct Table {
    writer: SerializedFileWriter<File>,
    kinds: Vec<Kind>,
    text: Vec<Vec<ByteArray>>,
    counts: Vec<Vec<i64>>,
    rows: usize,
}

fn schema(name: &str, columns: &[(&str, Kind)]) -> anyhow::Result<TypePtr> {
    let fields = columns
        .iter()
        .map(|(column, kind)| {
            let t = match kind {
                Kind::Text => {
                    Type::primitive_type_builder(column, parquet::basic::Type::BYTE_ARRAY)
                        .with_logical_type(Some(parquet::basic::LogicalType::String))
                }
                Kind::Count => Type::primitive_type_builder(column, parquet::basic::Type::INT64),
            };
            Ok(Arc::new(
                t.with_repetition(parquet::basic::Repetition::REQUIRED)
                    .build()?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Arc::new(
        Type::group_type_builder(name).with_fields(fields).build()?,
    ))
}

impl Table {
    pub fn create(path: &Path, name: &str, columns: &[(&str, Kind)]) -> anyhow::Result<Table> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let props = Arc::new(WriterProperties::builder().build());
        let writer = SerializedFileWriter::new(file, schema(name, columns)?, props)?;
        let kinds: Vec<Kind> = columns.iter().map(|(_, k)| *k).collect();
        Ok(Table {
            writer,
            text: kinds.iter().map(|_| Vec::new()).collect(),
            counts: kinds.iter().map(|_| Vec::new()).collect(),
            kinds,
            rows: 0,
        })
    }

    /// One row: a value per column, a count's as its decimal text.
    pub fn push(&mut self, row: &[&str]) -> anyhow::Result<()> {
        anyhow::ensure!(row.len() == self.kinds.len(), "row of {} values", row.len());
        for (i, (value, kind)) in row.iter().zip(&self.kinds).enumerate() {
            match kind {
                Kind::Text => self.text[i].push(ByteArray::from(*value)),
                Kind::Count => self.counts[i].push(value.parse().context("a count")?),
            }
        }
        self.rows += 1;
        if self.rows == ROW_GROUP_ROWS_MAX {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        let mut i = 0;
        while let Some(mut column) = group.next_column()? {
            match self.kinds[i] {
                Kind::Text => {
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&self.text[i], None, None)?;
                    self.text[i].clear();
                }
                Kind::Count => {
                    column
                        .typed::<Int64Type>()
                        .write_batch(&self.counts[i], None, None)?;
                    self.counts[i].clear();
                }
            }
            column.close()?;
            i += 1;
        }
        group.close()?;
        self.rows = 0;
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.flush()?;
        self.writer.close()?;
        Ok(())
    }
}
