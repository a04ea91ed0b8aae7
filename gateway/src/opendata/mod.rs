//! Open data: the daily export an operator can publish (docs/open-data.md).
//!
//! Two tables of one business day of an operator's metro journeys, as CSV (RFC 4180, UTF-8,
//! header row) with a Frictionless `datapackage.json`:
//! - `hourly_entries.csv`: entries per station, local hour and fare class (the shape of MTA's
//!   "Subway Hourly Ridership");
//! - `od_matrix.csv`: journeys per origin, destination and hour band, exact (we see exits).
//!
//! No rider id, credential, code or exact time leaves the database: it counts (GROUP BY) and
//! the export only ever sees counts. Which counts are published is decided by [`rules`].
//!
//! The same tables are written as Parquet ([`parquet_out`]), with the same columns and values.
//!
//! Optionally ([`export_noisy`]) the counts are differentially private ([`dp`]): each rider's
//! journeys are bounded in the database, every cell gets geometric noise, and a cell is
//! published only above a threshold that makes the cells' existence safe too.
//!
//! Deliberately not here: toll journeys (docs/open-data.md says why).

pub mod dp;
pub mod package;
pub mod parquet_out;
pub mod rules;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::Context;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use rand::{CryptoRng, RngCore};

use crate::store::opendata::{DayQuery, EntryCount};
use crate::store::{OperatorRow, Store};
use rules::{Day, Suppression, BANDS};

pub const ENTRIES_FILE: &str = "hourly_entries.csv";
pub const OD_FILE: &str = "od_matrix.csv";
pub const ENTRIES_PARQUET: &str = "hourly_entries.parquet";
pub const OD_PARQUET: &str = "od_matrix.parquet";
pub const PACKAGE_FILE: &str = "datapackage.json";

/// Published entries per (station, band): what bounds each O–D row (rule 2).
type EntriesByBand = HashMap<(String, usize), i64>;

/// What one export is asked to do.
#[derive(Debug, Clone)]
pub struct Export {
    pub date: Date,
    /// The smallest count published ([`rules::K_DEFAULT`]).
    pub k: i64,
    /// The package goes to `out/<operator_id>/<date>/`.
    pub out: PathBuf,
    pub licence: package::Licence,
}

/// What an export wrote: where, and how many cells each table published and withheld.
#[derive(Debug, Clone)]
pub struct Report {
    pub operator_id: String,
    pub dir: PathBuf,
    pub entries: Suppression,
    pub od: Suppression,
    /// Journeys of the day still open at export time: not counted.
    pub open_journeys: i64,
    /// With noise: the mechanism, and what the per-rider bound left out.
    pub noise: Option<NoiseReport>,
}

/// What a noisy export used, and (for the operator only, never published) what the bound cost.
#[derive(Debug, Clone)]
pub struct NoiseReport {
    pub dp: dp::Dp,
    /// Each table's mechanism (both tables get the same share).
    pub table: dp::Table,
    /// The smallest count published: max(k, τ).
    pub threshold: i64,
    pub k: i64,
    /// Closed journeys of the day beyond their rider's first C, not counted.
    pub journeys_beyond_bound: i64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let noisy = self.noise.is_some();
        let table = |f: &mut std::fmt::Formatter<'_>, name: &str, s: &Suppression| {
            if noisy {
                // With noise only the threshold withholds (rules 2 and 3 do not apply).
                return writeln!(
                    f,
                    "  {name}: {} cells published ({} journeys, noisy); withheld {} cells below the threshold ({} journeys)",
                    s.cells_published,
                    s.journeys_published,
                    s.cells_withheld(),
                    s.journeys_withheld
                );
            }
            writeln!(
                f,
                "  {name}: {} cells published ({} journeys); withheld {} cells ({} small, {} entries bound, {} complementary; {} journeys)",
                s.cells_published,
                s.journeys_published,
                s.cells_withheld(),
                s.cells_small,
                s.cells_bound,
                s.cells_complement,
                s.journeys_withheld
            )
        };
        writeln!(
            f,
            "open data for {} → {}",
            self.operator_id,
            self.dir.display()
        )?;
        if let Some(n) = &self.noise {
            writeln!(
                f,
                "  noisy counts: ε = {} (ε = {} per table), δ = {:e} ({:e} per table), at most {} journeys per rider; geometric noise of scale {:.1}; published only from {} (τ = {}, k = {})",
                n.dp.epsilon(),
                n.table.epsilon,
                n.dp.delta(),
                n.table.delta,
                n.dp.journeys_per_rider_max(),
                n.table.scale(),
                n.threshold,
                n.table.tau,
                n.k,
            )?;
            writeln!(
                f,
                "  journeys beyond a rider's first {} (not counted): {}; the journeys below are exact, for the operator only (not covered by ε: do not publish this report)",
                n.dp.journeys_per_rider_max(), n.journeys_beyond_bound
            )?;
        }
        table(f, ENTRIES_FILE, &self.entries)?;
        table(f, OD_FILE, &self.od)?;
        write!(
            f,
            "  journeys still open (not counted): {}",
            self.open_journeys
        )
    }
}

/// Checks an export's k.
pub fn check_k(k: i64) -> anyhow::Result<i64> {
    anyhow::ensure!(
        (rules::K_MIN..=rules::K_MAX).contains(&k),
        "k must be between {} and {} (got {k})",
        rules::K_MIN,
        rules::K_MAX
    );
    Ok(k)
}

/// Exports one operator's day, with exact counts. The package is written beside its final
/// place and renamed into it, so a reader never sees half a package and a re-run replaces the
/// previous one.
pub async fn export(store: &Store, operator: &OperatorRow, job: &Export) -> anyhow::Result<Report> {
    export_with(store, operator, job, None).await
}

/// Exports one operator's day with differentially private counts (docs/open-data.md,
/// "Differential privacy"): at most C journeys per rider, geometric noise drawn from `rng` on
/// every cell, cells published from max(k, τ). `rng` must be a cryptographically secure
/// generator (the command seeds one from the operating system); tests pass a seeded one.
pub async fn export_noisy<R: RngCore + CryptoRng + Send>(
    store: &Store,
    operator: &OperatorRow,
    job: &Export,
    dp: &dp::Dp,
    rng: &mut R,
) -> anyhow::Result<Report> {
    let table = dp.per_table();
    let noise = Noise {
        dp: *dp,
        table,
        threshold: job.k.max(table.tau),
        rng,
    };
    export_with(store, operator, job, Some(noise)).await
}

/// How counts become published ones with noise: one table's mechanism (both tables have the
/// same share) and the generator.
struct Noise<'r> {
    dp: dp::Dp,
    table: dp::Table,
    /// max(k, τ).
    threshold: i64,
    rng: &'r mut (dyn RngCore + Send),
}

impl Noise<'_> {
    fn add(&mut self, count: i64) -> i64 {
        count + self.table.noise(&mut *self.rng)
    }
}

async fn export_with(
    store: &Store,
    operator: &OperatorRow,
    job: &Export,
    mut noise: Option<Noise<'_>>,
) -> anyhow::Result<Report> {
    check_k(job.k)?;
    anyhow::ensure!(
        operator.mode == "metro",
        "operator {} is a {} operator; the open-data export covers metro operators (docs/open-data.md)",
        operator.operator_id,
        operator.mode
    );
    let tz = TimeZone::get(&operator.time_zone).with_context(|| {
        format!(
            "operator {}'s time zone {}",
            operator.operator_id, operator.time_zone
        )
    })?;
    let day = Day::new(job.date, tz)?;
    let name = day.name();
    let query = DayQuery {
        operator_id: &operator.operator_id,
        business_day: &name,
        start_ms: day.start_ms,
        end_ms: day.end_ms,
        journeys_per_rider_max: noise.as_ref().map(|n| n.dp.journeys_per_rider_max()),
    };
    let parent = job.out.join(&operator.operator_id);
    let dir = parent.join(&name);
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;

    let entries = store
        .open_data_entries(query)
        .await
        .context("counting entries")?;
    let (entry_report, published_by_band) =
        write_entries(&staging, &day, &entries, job.k, noise.as_mut())?;
    let od_report = write_od(
        store,
        &staging,
        &day,
        query,
        job.k,
        &published_by_band,
        noise.as_mut(),
    )
    .await?;
    let open_journeys = store.open_data_open_journeys(query).await?;
    let noise = match noise {
        None => None,
        Some(n) => Some(NoiseReport {
            dp: n.dp,
            table: n.table,
            threshold: n.threshold,
            k: job.k,
            journeys_beyond_bound: store
                .open_data_beyond_bound(query, n.dp.journeys_per_rider_max())
                .await?,
        }),
    };
    let package = package::datapackage(&package::Facts {
        operator,
        day: &day,
        k: job.k,
        licence: &job.licence,
        entries: &entry_report,
        od: &od_report,
        noise: noise.as_ref(),
        created: jiff::Timestamp::now(),
    });
    std::fs::write(
        staging.join(PACKAGE_FILE),
        serde_json::to_string_pretty(&package)? + "\n",
    )?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    std::fs::rename(&staging, &dir)
        .with_context(|| format!("moving the package to {}", dir.display()))?;
    Ok(Report {
        operator_id: operator.operator_id.clone(),
        dir,
        entries: entry_report,
        od: od_report,
        open_journeys,
        noise,
    })
}

fn csv_writer(path: &Path) -> anyhow::Result<csv::Writer<BufWriter<File>>> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(BufWriter::new(file)))
}

/// Writes the published entry cells in time, station and class order; returns the counts and
/// the published entries per (station, band), which bound the O–D rows (rule 2). With noise,
/// the rules and the files see the noisy counts; the report counts the true ones.
fn write_entries(
    dir: &Path,
    day: &Day,
    entries: &[EntryCount],
    k: i64,
    mut noise: Option<&mut Noise<'_>>,
) -> anyhow::Result<(Suppression, EntriesByBand)> {
    let threshold = noise.as_ref().map_or(k, |n| n.threshold);
    let mut report = Suppression::default();
    let mut by_band = EntriesByBand::new();
    let mut published: Vec<(&EntryCount, i64)> = Vec::new();
    for e in entries {
        let n = match noise.as_mut() {
            Some(noise) => noise.add(e.journeys),
            None => e.journeys,
        };
        let fate = rules::entries_withheld(n, threshold);
        report.count(fate, e.journeys);
        if fate.is_none() {
            *by_band
                .entry((e.station_id.clone(), day.band_of_hour(e.hour_index)))
                .or_default() += n;
            published.push((e, n));
        }
    }
    published.sort_by(|(a, _), (b, _)| {
        (a.hour_index, &a.station_id, a.fare_class).cmp(&(
            b.hour_index,
            &b.station_id,
            b.fare_class,
        ))
    });
    let mut w = csv_writer(&dir.join(ENTRIES_FILE))?;
    w.write_record(package::ENTRIES_COLUMNS)?;
    let mut p = parquet_out::Table::create(
        &dir.join(ENTRIES_PARQUET),
        "hourly_entries",
        &package::ENTRIES_COLUMNS
            .iter()
            .copied()
            .zip(package::ENTRIES_KINDS)
            .collect::<Vec<_>>(),
    )?;
    for (e, n) in published {
        let hour = day.hour_start(e.hour_index)?;
        let row = [
            hour.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            e.station_id.clone(),
            e.fare_class.as_str().to_string(),
            n.to_string(),
        ];
        w.write_record(&row)?;
        p.push(&row.each_ref().map(String::as_str))?;
    }
    w.flush()?;
    p.finish()?;
    Ok((report, by_band))
}

/// Streams the O–D rows from the store, applies the rules row by row and writes what may be
/// published, in origin, band, destination order. With noise: every cell gets its noise, and
/// only rule 1 applies to the noisy counts (`rules::noisy_withheld` says why).
async fn write_od(
    store: &Store,
    dir: &Path,
    day: &Day,
    query: DayQuery<'_>,
    k: i64,
    entries_published: &EntriesByBand,
    mut noise: Option<&mut Noise<'_>>,
) -> anyhow::Result<Suppression> {
    let mut report = Suppression::default();
    let mut w = csv_writer(&dir.join(OD_FILE))?;
    w.write_record(package::OD_COLUMNS)?;
    let mut p = parquet_out::Table::create(
        &dir.join(OD_PARQUET),
        "od_matrix",
        &package::OD_COLUMNS
            .iter()
            .copied()
            .zip(package::OD_KINDS)
            .collect::<Vec<_>>(),
    )?;
    let date = day.name();
    store
        .open_data_od_rows(query, &day.band_starts_ms, |origin, band, cells| {
            let band_index = usize::try_from(band).context("band")?;
            let b = BANDS.get(band_index).context("band out of range")?;
            let bound = entries_published
                .get(&(origin.to_string(), band_index))
                .copied()
                .unwrap_or(0);
            let (counts, fates) = match noise.as_mut() {
                None => {
                    let counts: Vec<i64> = cells.iter().map(|(_, n)| *n).collect();
                    let fates = rules::od_row_withheld(&counts, k, bound);
                    (counts, fates)
                }
                Some(noise) => {
                    let counts: Vec<i64> = cells.iter().map(|(_, n)| noise.add(*n)).collect();
                    let fates = rules::noisy_withheld(&counts, noise.threshold);
                    (counts, fates)
                }
            };
            for (((destination, exact), n), fate) in cells.iter().zip(counts).zip(fates) {
                report.count(fate, *exact);
                if fate.is_none() {
                    let (start, end, n) = (
                        b.start_hour.to_string(),
                        b.end_hour.to_string(),
                        n.to_string(),
                    );
                    let row = [date.as_str(), b.name, &start, &end, origin, destination, &n];
                    w.write_record(row)?;
                    p.push(&row)?;
                }
            }
            Ok(())
        })
        .await
        .context("counting O–D journeys")?;
    w.flush()?;
    p.finish()?;
    Ok(report)
}
