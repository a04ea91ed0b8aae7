//! The open-data export end to end: journeys made by riders tapping through the running
//! gateway, exported from its database (by the library and by the `gateway export open-data`
//! command), on both databases. It proves that a single rider's rare trip cannot be read from
//! the export — neither directly nor by subtracting published counts — and that the common
//! cells are exact and the `datapackage.json` describes the files. With `--epsilon`, that each
//! rider counts at most C journeys, that the noisy package still meets its own schema, and that
//! every run draws new noise.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use gateway::opendata::{self, package, rules};
use turnpike_client::demo::METRO_OPERATOR;
use turnpike_tests::{demo_stops, gate, now_ms, tap, Db, Env};
use turnpike_wire::api::{Decision, Direction};

/// Journeys by (origin, destination) stop index of the demo metro, each by a rider of its own.
/// `target` is the rare trip the test hides: one rider, index 1 → `target`.
fn trips(target: usize) -> Vec<(usize, usize)> {
    let mut t = Vec::new();
    let mut add = |o: usize, d: usize, n: usize| t.extend(std::iter::repeat_n((o, d), n));
    add(1, 2, 12); // common
    add(1, 3, 11); // common
    add(1, target, 1); // the rare trip
    add(2, 1, 10); // exactly k
    add(2, 5, 12); // common
    add(2, 3, 3); // rare pair
    add(3, 4, 2); // rare pair, from a station with few entries
    t
}

/// Runs every trip through the gateway: an entry at the origin's gate 1, an exit at the
/// destination's gate 2, each rider with their own device.
async fn ride(env: &Env, trips: &[(usize, usize)]) {
    let riders: Vec<Vec<(usize, usize)>> = trips.iter().map(|&t| vec![t]).collect();
    ride_riders(env, &riders).await;
}

/// Runs each rider's journeys, in order, through the gateway (as [`ride`]), one device per
/// rider.
async fn ride_riders(env: &Env, riders: &[Vec<(usize, usize)>]) {
    let stops = demo_stops();
    let mut sequences: HashMap<String, u64> = HashMap::new();
    let mut next = |id: &str| {
        let s = sequences.entry(id.to_string()).or_insert(0);
        *s += 1;
        *s
    };
    for journeys in riders {
        let rider = env.gw.rider().await;
        for &(o, d) in journeys {
            for (stop, n, direction) in [(o, 1, Direction::Entry), (d, 2, Direction::Exit)] {
                let id = gate(&stops[stop], n);
                let answer = env
                    .gw
                    .terminal(&id)
                    .tap(&tap(
                        next(&id),
                        direction,
                        rider.ride_code(now_ms()).unwrap(),
                    ))
                    .await
                    .unwrap();
                assert_eq!(answer.decision, Decision::Approve, "{answer:?}");
            }
        }
    }
}

/// The test's journeys must all enter within one local hour (the files name it): in an hour's
/// last two minutes, wait for the next. (The zone's offset is whole hours, so UTC hours will do.)
async fn same_hour_for_a_while() {
    let into_hour_s = jiff::Timestamp::now().as_second().rem_euclid(3600);
    if into_hour_s >= 3480 {
        tokio::time::sleep(std::time::Duration::from_secs((3602 - into_hour_s) as u64)).await;
    }
}

fn today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .date()
}

async fn export(env: &Env, out: &Path) -> opendata::Report {
    let operator = env
        .gw
        .state
        .store
        .operators()
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.operator_id == METRO_OPERATOR)
        .unwrap();
    let job = opendata::Export {
        date: today(),
        k: rules::K_DEFAULT,
        out: out.to_path_buf(),
        licence: package::Licence::named(package::Licence::DEFAULT),
    };
    opendata::export(&env.gw.state.store, &operator, &job)
        .await
        .unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A CSV file as header + rows (checking RFC 4180 line ends on the way).
fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = read(path);
    assert!(text.ends_with("\r\n"), "{}: CRLF line ends", path.display());
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// A Parquet file's rows, every value as the CSV spells it.
fn parquet_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let header = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let rows = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(_, f)| match f {
                    Field::Str(s) => s.clone(),
                    Field::Long(n) => n.to_string(),
                    other => panic!("unexpected {other:?}"),
                })
                .collect()
        })
        .collect();
    (header, rows)
}

/// Checks `datapackage.json` against the files: every resource's fields are its CSV's header,
/// in order; every value has the field's type and meets its constraints; primary keys are
/// unique. Returns the package.
fn check_package(dir: &Path) -> serde_json::Value {
    let package: serde_json::Value =
        serde_json::from_str(&read(&dir.join("datapackage.json"))).unwrap();
    assert_eq!(package["profile"], "tabular-data-package");
    assert!(package["name"]
        .as_str()
        .unwrap()
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c)));
    assert_eq!(package["licenses"][0]["name"], "CC-BY-4.0");
    assert!(package["sources"][0]["title"].is_string());
    assert_eq!(package["privacy"]["k"], 10);
    let resources = package["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 2);
    assert_eq!(package["parquet"].as_array().unwrap().len(), 2);
    for resource in resources {
        let path = dir.join(resource["path"].as_str().unwrap());
        let (header, rows) = csv_rows(&path);
        // The Parquet file holds the same table.
        assert_eq!(
            parquet_rows(&path.with_extension("parquet")),
            (header.clone(), rows.clone())
        );
        let fields = resource["schema"]["fields"].as_array().unwrap();
        let names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(header, names, "{}", path.display());
        for row in &rows {
            for (value, field) in row.iter().zip(fields) {
                let c = &field["constraints"];
                match field["type"].as_str().unwrap() {
                    "integer" => {
                        let n: i64 = value
                            .parse()
                            .unwrap_or_else(|_| panic!("{value} is not an integer"));
                        if let Some(min) = c["minimum"].as_i64() {
                            assert!(n >= min, "{} {n} < {min}", field["name"]);
                        }
                        if let Some(max) = c["maximum"].as_i64() {
                            assert!(n <= max, "{} {n} > {max}", field["name"]);
                        }
                    }
                    "datetime" => {
                        value
                            .parse::<jiff::Timestamp>()
                            .unwrap_or_else(|e| panic!("{value}: {e}"));
                    }
                    "date" => {
                        value
                            .parse::<jiff::civil::Date>()
                            .unwrap_or_else(|e| panic!("{value}: {e}"));
                    }
                    "string" => assert!(!value.is_empty()),
                    other => panic!("unexpected type {other}"),
                }
                if let Some(allowed) = c["enum"].as_array() {
                    assert!(
                        allowed.iter().any(|a| a == value),
                        "{value} not in {allowed:?}"
                    );
                }
            }
        }
        let key: Vec<usize> = resource["schema"]["primaryKey"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| names.iter().position(|n| n == k).unwrap())
            .collect();
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            assert!(
                seen.insert(key.iter().map(|&i| row[i].clone()).collect::<Vec<_>>()),
                "duplicate key"
            );
        }
    }
    package
}

/// The published cells: entries by (station, class) (all in one hour here), O–D by (origin,
/// destination).
struct Published {
    entries: BTreeMap<(String, String), i64>,
    od: BTreeMap<(String, String), i64>,
    files: Vec<String>,
}

fn published(dir: &Path) -> Published {
    let (_, entries) = csv_rows(&dir.join(opendata::ENTRIES_FILE));
    let (_, od) = csv_rows(&dir.join(opendata::OD_FILE));
    Published {
        entries: entries
            .iter()
            .map(|r| ((r[1].clone(), r[2].clone()), r[3].parse().unwrap()))
            .collect(),
        od: od
            .iter()
            .map(|r| ((r[4].clone(), r[5].clone()), r[6].parse().unwrap()))
            .collect(),
        files: [opendata::ENTRIES_FILE, opendata::OD_FILE]
            .iter()
            .map(|f| read(&dir.join(f)))
            .collect(),
    }
}

async fn world(
    db: Db,
    target: usize,
    scratch_out: &Path,
) -> Option<(Env, opendata::Report, PathBuf)> {
    let env = Env::start(db).await?;
    ride(&env, &trips(target)).await;
    let report = export(&env, scratch_out).await;
    let dir = report.dir.clone();
    Some((env, report, dir))
}

async fn rare_trips_cannot_be_read_back(db: Db) {
    // One rider travels stop 1 → stop 4, alone, among common trips; a second world is the same
    // except that this rider went to stop 6 instead. The exports of the two worlds are
    // byte-identical: nothing published tells where the rider went. The common cells are exact.
    let out = turnpike_tests::Scratch::new("open-data");
    same_hour_for_a_while().await;
    let Some((env, report, dir)) = world(db, 4, &out.0.join("a")).await else {
        return;
    };
    let Some((_env_b, _report_b, dir_b)) = world(db, 6, &out.0.join("b")).await else {
        return;
    };
    let s = demo_stops();
    let a = published(&dir);
    let b = published(&dir_b);
    assert_eq!(a.files, b.files, "the two worlds' exports differ");

    let od = |o: usize, d: usize| (s[o].clone(), s[d].clone());
    // Exact where the rules allow: 1→2 (12) and 2→5 (12); 2→1 (10 = k) is the smallest
    // published cell of a row whose only small cell is 2→3, so it is withheld with it; 1→3
    // (11) likewise protects the rare trip 1→4.
    let expected: BTreeMap<_, _> = [(od(1, 2), 12), (od(2, 5), 12)].into_iter().collect();
    assert_eq!(a.od, expected);
    // Entries: 24 at stop 1 and 25 at stop 2, exact; 2 at stop 3 withheld.
    let entries: BTreeMap<_, _> = [
        ((s[1].clone(), "full_fare".to_string()), 24),
        ((s[2].clone(), "full_fare".to_string()), 25),
    ]
    .into_iter()
    .collect();
    assert_eq!(a.entries, entries);
    // The rare trip's destination appears in no file at all.
    for f in &a.files {
        assert!(!f.contains(&format!(",{},", s[4])), "stop 4 is named:\n{f}");
    }
    // Subtraction: the only relation between the tables is that an origin's O–D journeys are
    // some of its entries. From stop 1, 24 entries minus 12 published journeys leaves 12
    // unaccounted for — at least k, spread over every unpublished destination (and journeys
    // that never exited), so the rare trip is not the difference.
    let unaccounted = a.entries[&(s[1].clone(), "full_fare".into())] - a.od[&od(1, 2)];
    assert!(unaccounted >= rules::K_DEFAULT, "{unaccounted}");
    // No published row exceeds its origin's published entries.
    for ((o, _), n) in &a.od {
        let entered: i64 = a
            .entries
            .iter()
            .filter(|((st, _), _)| st == o)
            .map(|(_, v)| v)
            .sum();
        assert!(*n <= entered);
    }

    // The operator's counts: what each rule withheld.
    assert_eq!(report.od.cells_published, 2);
    assert_eq!(report.od.cells_small, 3, "1→4, 2→3, 3→4");
    assert_eq!(report.od.cells_complement, 2, "1→3, 2→1");
    assert_eq!(report.od.cells_bound, 0);
    assert_eq!(report.od.journeys_withheld, 1 + 11 + 10 + 3 + 2);
    assert_eq!(report.entries.cells_published, 2);
    assert_eq!(report.entries.cells_small, 1);
    assert_eq!(report.open_journeys, 0);
    println!("{report}");

    // The descriptor matches the files and states the suppression.
    let package = check_package(&dir);
    let stated = &package["privacy"]["suppression"]["od_matrix.csv"];
    assert_eq!(stated["cells_withheld_small"], 3);
    assert_eq!(stated["cells_withheld_complementary"], 2);
    assert!(package["privacy"].get("journeys_withheld").is_none());

    frictionless_validate(&dir);

    // The command writes the same files.
    cli_export(&env, &out.0.join("cli"), &a.files).await;
}

/// The Frictionless project's own validator on the package (PyPI `frictionless`, installed by
/// `.ci/run` in target/ops-venv, named by `TURNPIKE_FRICTIONLESS`): schema, types, constraints,
/// keys. Missing, it is skipped unless `TURNPIKE_REQUIRE_DEPLOY_TOOLS=1`.
fn frictionless_validate(dir: &Path) {
    let program = std::env::var("TURNPIKE_FRICTIONLESS").unwrap_or_else(|_| "frictionless".into());
    let required = std::env::var_os("TURNPIKE_REQUIRE_DEPLOY_TOOLS").is_some_and(|v| v == "1");
    match std::process::Command::new(&program)
        .args(["validate", "datapackage.json"])
        .current_dir(dir)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "frictionless validate:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            assert!(
                !required,
                "{program}: {e} (TURNPIKE_REQUIRE_DEPLOY_TOOLS=1)"
            );
            eprintln!("{program} missing: the package was not validated by frictionless");
        }
    }
}

/// `gateway export open-data` on the gateway's database (its config file), as an operator
/// runs it, with `extra` arguments: its output, and the package's directory.
fn run_export_command(env: &Env, out: &Path, extra: &[&str]) -> (String, PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("gateway");
    if !bin.exists() {
        panic!(
            "{} is missing: build it (cargo build -p gateway)",
            bin.display()
        );
    }
    let config = out.with_extension("toml");
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(&config, format!("[database]\nurl = \"{}\"\n", env.db.url())).unwrap();
    let output = std::process::Command::new(&bin)
        .args([
            "export",
            "open-data",
            "--date",
            &today().to_string(),
            "--out",
        ])
        .arg(out)
        .args(["--operator", METRO_OPERATOR, "--config"])
        .arg(&config)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (stdout, out.join(METRO_OPERATOR).join(today().to_string()))
}

/// The command writes the same tables as the library wrote.
async fn cli_export(env: &Env, out: &Path, expected: &[String]) {
    let (stdout, dir) = run_export_command(env, out, &[]);
    assert!(
        stdout.contains("withheld 5 cells (3 small, 0 entries bound, 2 complementary"),
        "{stdout}"
    );
    assert_eq!(published(&dir).files, expected);
    check_package(&dir);
}

turnpike_tests::on_both!(rare_trips_cannot_be_read_back);

async fn capped_journeys_are_a_fare_class(db: Db) {
    // With a 10.00 CNY daily cap, riders who go back and forth between two stations are
    // charged less than the fare (or nothing) once they reach it: the export counts those
    // entries as `capped`, the others as `full_fare`, exactly as the gateway charged them (read
    // back through each rider's own journey list).
    let Some(env) = Env::start_custom(db, |_| {}, Some("10.00")).await else {
        return;
    };
    same_hour_for_a_while().await;
    let stops = demo_stops();
    let mut sequences: HashMap<String, u64> = HashMap::new();
    let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
    for _ in 0..10 {
        let rider = env.gw.rider().await;
        for leg in 0..6 {
            let (o, d) = if leg % 2 == 0 { (1, 9) } else { (9, 1) };
            for (stop, n, direction) in [(o, 1, Direction::Entry), (d, 2, Direction::Exit)] {
                let id = gate(&stops[stop], n);
                let seq = sequences.entry(id.clone()).or_insert(0);
                *seq += 1;
                let answer = env
                    .gw
                    .terminal(&id)
                    .tap(&tap(*seq, direction, rider.ride_code(now_ms()).unwrap()))
                    .await
                    .unwrap();
                assert_eq!(answer.decision, Decision::Approve, "{answer:?}");
            }
        }
        for j in rider
            .journeys(&env.gw.public_base, &env.gw.ca())
            .await
            .unwrap()
            .journeys
        {
            let (fare, charge) = (j.fare.unwrap(), j.charge.unwrap());
            let class = if charge.to_minor() < fare.to_minor() {
                "capped"
            } else {
                "full_fare"
            };
            *expected
                .entry((j.entry_location_id.unwrap(), class.to_string()))
                .or_default() += 1;
        }
    }
    assert!(
        expected.keys().any(|(_, c)| c == "capped")
            && expected.keys().any(|(_, c)| c == "full_fare"),
        "the day has both classes: {expected:?}"
    );
    let out = turnpike_tests::Scratch::new("open-data-cap");
    let report = export(&env, &out.0).await;
    let got = published(&report.dir).entries;
    let expected_published: BTreeMap<_, _> = expected
        .into_iter()
        .filter(|(_, n)| *n >= rules::K_DEFAULT)
        .collect();
    assert_eq!(got, expected_published);
    check_package(&report.dir);
}

turnpike_tests::on_both!(capped_journeys_are_a_fare_class);

/// Today in the demo metro's zone.
fn today_there() -> rules::Day {
    rules::Day::new(today(), jiff::tz::TimeZone::get("Asia/Shanghai").unwrap()).unwrap()
}

/// What the export asks the store for `day` (named `name`), with or without the bound.
fn day_query<'a>(
    day: &rules::Day,
    name: &'a str,
    journeys_per_rider_max: Option<i64>,
) -> gateway::store::opendata::DayQuery<'a> {
    gateway::store::opendata::DayQuery {
        operator_id: METRO_OPERATOR,
        business_day: name,
        start_ms: day.start_ms,
        end_ms: day.end_ms,
        journeys_per_rider_max,
    }
}

/// Entries per station and O–D journeys per pair, as the store counts them (the test's
/// journeys all enter in one hour and one band).
async fn store_counts(
    env: &Env,
    journeys_per_rider_max: Option<i64>,
) -> (BTreeMap<String, i64>, BTreeMap<(String, String), i64>) {
    let day = today_there();
    let name = day.name();
    let query = day_query(&day, &name, journeys_per_rider_max);
    let store = &env.gw.state.store;
    let mut entries = BTreeMap::new();
    for e in store.open_data_entries(query).await.unwrap() {
        *entries.entry(e.station_id).or_default() += e.journeys;
    }
    let mut od = BTreeMap::new();
    store
        .open_data_od_rows(query, &day.band_starts_ms, |origin, _, cells| {
            for (destination, n) in cells {
                *od.entry((origin.to_string(), destination)).or_default() += n;
            }
            Ok(())
        })
        .await
        .unwrap();
    (entries, od)
}

/// What the store should count for these riders' journeys, each rider's first `max` only.
fn expected_counts(
    riders: &[Vec<(usize, usize)>],
    max: usize,
) -> (BTreeMap<String, i64>, BTreeMap<(String, String), i64>) {
    let s = demo_stops();
    let (mut entries, mut od) = (BTreeMap::new(), BTreeMap::new());
    for &(o, d) in riders.iter().flat_map(|r| r.iter().take(max)) {
        *entries.entry(s[o].clone()).or_default() += 1;
        *od.entry((s[o].clone(), s[d].clone())).or_default() += 1;
    }
    (entries, od)
}

async fn noisy_export_bounds_each_rider(db: Db) {
    // 80 riders go 1 → 2 and 80 go 2 → 5, once each; one more rider goes back and forth
    // between 1 and 7 fifty times. Counted with the bound C = 4 (noise off), that rider
    // contributes exactly their first four journeys: the counts equal those of the same day
    // with the other 46 journeys removed. Exported with `--epsilon 4` by the `gateway` command
    // three times: each package meets its schema (minimum = the threshold), states the budget,
    // publishes the common cells within a generous distance of the true counts and nothing
    // of station 7, and the three runs' noise differs.
    let Some(env) = Env::start(db).await else {
        return;
    };
    same_hour_for_a_while().await;
    let s = demo_stops();
    let c: i64 = 4;
    let heavy: Vec<(usize, usize)> = (0..50)
        .map(|i| if i % 2 == 0 { (1, 7) } else { (7, 1) })
        .collect();
    let mut riders: Vec<Vec<(usize, usize)>> = vec![vec![(1, 2)]; 80];
    riders.extend(vec![vec![(2, 5)]; 80]);
    riders.push(heavy);
    ride_riders(&env, &riders).await;

    // The bound, exactly: unbounded the rider's 50 journeys are all there; bounded, only the
    // first four (1→7, 7→1, 1→7, 7→1), as if the rest had not happened.
    assert_eq!(store_counts(&env, None).await, expected_counts(&riders, 50));
    let bounded = store_counts(&env, Some(c)).await;
    assert_eq!(bounded, expected_counts(&riders, c as usize));
    assert_eq!(bounded.0[&s[7]], 2);
    assert_eq!(bounded.1[&(s[1].clone(), s[7].clone())], 2);
    let day = today_there();
    let name = day.name();
    let beyond = env
        .gw
        .state
        .store
        .open_data_beyond_bound(day_query(&day, &name, None), c)
        .await
        .unwrap();
    assert_eq!(beyond, 46);

    // ε = 4 for the package (2 per table), C = 4, δ = 1e-7: noise of scale 2, τ = 37.
    let out = turnpike_tests::Scratch::new("open-data-dp");
    let mut runs = Vec::new();
    for run in 0..3 {
        let (stdout, dir) = run_export_command(
            &env,
            &out.0.join(format!("run-{run}")),
            &["--epsilon", "4", "--max-journeys-per-rider", "4"],
        );
        assert!(
            stdout.contains("journeys beyond a rider's first 4 (not counted): 46"),
            "{stdout}"
        );
        assert!(
            stdout.contains("published only from 37 (τ = 37, k = 10)"),
            "{stdout}"
        );
        // Only the threshold withholds: the printout names no rule that did not run.
        assert!(
            stdout.contains("noisy); withheld") && !stdout.contains("complementary"),
            "{stdout}"
        );
        let package = check_package(&dir);
        frictionless_validate(&dir);
        let p = &package["privacy"];
        let dp = &p["differential_privacy"];
        assert_eq!(dp["applied"], true);
        assert_eq!(dp["epsilon"], 4.0);
        assert_eq!(dp["delta"], 1e-7);
        assert_eq!(dp["max_journeys_per_rider"], 4);
        assert_eq!(dp["threshold"], 37);
        for table in ["hourly_entries.csv", "od_matrix.csv"] {
            assert_eq!(dp["tables"][table]["epsilon"], 2.0);
            assert_eq!(dp["tables"][table]["tau"], 37);
            // Only what the noisy release shows: no count of cells below the threshold.
            assert_eq!(
                p["suppression"][table]
                    .as_object()
                    .unwrap()
                    .keys()
                    .collect::<Vec<_>>(),
                ["cells_published"]
            );
        }
        let fields = package["resources"][0]["schema"]["fields"]
            .as_array()
            .unwrap();
        assert_eq!(fields[3]["constraints"]["minimum"], 37);

        // The common cells, noisy: P(|Z| > 40) ≈ 2e-9 per cell at scale 2. Station 7 (the
        // heavy rider's 2 counted entries, 2 journeys each way) is below τ by 35: absent.
        let got = published(&dir);
        let full = |st: usize| (s[st].clone(), "full_fare".to_string());
        assert_eq!(
            got.entries.keys().cloned().collect::<Vec<_>>(),
            [full(1), full(2)]
        );
        assert_eq!(
            got.od.keys().cloned().collect::<Vec<_>>(),
            [(s[1].clone(), s[2].clone()), (s[2].clone(), s[5].clone())]
        );
        for (key, n) in &got.entries {
            let exact = bounded.0[&key.0];
            assert!((n - exact).abs() <= 40, "{key:?}: {n} vs {exact}");
        }
        for (key, n) in &got.od {
            let exact = bounded.1[key];
            assert!((n - exact).abs() <= 40, "{key:?}: {n} vs {exact}");
        }
        for f in &got.files {
            assert!(!f.contains(&s[7]), "station 7 is named:\n{f}");
        }
        println!("run {run}: entries {:?}, od {:?}", got.entries, got.od);
        runs.push(got.files);
    }
    // New noise each run (all three equal: about 1e-7): a re-run is a second release.
    assert!(
        runs[0] != runs[1] || runs[1] != runs[2],
        "three runs drew the same noise"
    );
}

turnpike_tests::on_both!(noisy_export_bounds_each_rider);

/// The cost of a large day (docs/open-data.md, "Cost"): `OPEN_DATA_JOURNEYS` (default 1 M)
/// closed journeys over 300 stations, written by SQL as the gateway writes them (3 % without an
/// exit, 10 % capped), exported by the `gateway` binary under `/usr/bin/time -v`, on
/// PostgreSQL (or SQLite with `OPEN_DATA_DB=sqlite`); with `OPEN_DATA_EPSILON=E`, exported
/// with `--epsilon E` (and the default bound and δ). Run by hand:
/// `cargo build -p gateway && cargo test -p turnpike-tests --test open_data -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: about a minute and a 1 M-row database"]
async fn a_large_day() {
    let sqlite = std::env::var("OPEN_DATA_DB").is_ok_and(|v| v == "sqlite");
    let scratch = turnpike_tests::Scratch::new("open-data-scale");
    let Some(db) = turnpike_tests::Database::create(
        if sqlite { Db::Sqlite } else { Db::Postgres },
        &scratch,
        "gateway.db",
    )
    .await
    else {
        return;
    };
    let journeys: i64 = std::env::var("OPEN_DATA_JOURNEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let store = gateway::store::Store::connect(db.url(), 2, 1)
        .await
        .unwrap();
    store
        .insert_operator(&gateway::store::OperatorRow {
            operator_id: METRO_OPERATOR.into(),
            name: "Metro".into(),
            mode: "metro".into(),
            time_zone: "Asia/Shanghai".into(),
            currency: "CNY".into(),
            daily_cap_minor: Some(1_000),
            created_at_ms: 0,
        })
        .await
        .unwrap();
    store.close().await;
    let date = jiff::civil::date(2026, 12, 4);
    let day = rules::Day::new(date, jiff::tz::TimeZone::get("Asia/Shanghai").unwrap()).unwrap();
    let started = std::time::Instant::now();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(db.url())
        .await
        .unwrap();
    let series = if sqlite {
        format!("(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {journeys}) SELECT g FROM s)")
    } else {
        format!("(SELECT g FROM generate_series(1::bigint, {journeys}::bigint) AS g)")
    };
    // Origins skewed towards low station numbers (a few busy stations), destinations spread;
    // entries through the day from 05:00, exits 20 minutes later.
    let sql = format!(
        "INSERT INTO journeys (journey_id, rider_id, credential_id, operator_id, mode, status,
             entry_terminal_id, entry_sequence, entry_location_id, entry_at_ms,
             exit_terminal_id, exit_sequence, exit_location_id, exit_at_ms, vehicle_class,
             close_reason, fare_minor, charge_minor, currency, business_day, closed_at_ms)
         SELECT g, 1 + g % 400000, 1 + g % 400000, '{op}', 'metro', 'closed',
             'gate-st' || o || '-1', g, 'st' || o, e,
             CASE WHEN g % 33 = 0 THEN NULL ELSE 'gate-st' || d || '-2' END,
             CASE WHEN g % 33 = 0 THEN NULL ELSE g END,
             CASE WHEN g % 33 = 0 THEN NULL ELSE 'st' || d END,
             CASE WHEN g % 33 = 0 THEN NULL ELSE e + 1200000 END, NULL,
             CASE WHEN g % 33 = 0 THEN 'incomplete' ELSE 'exit' END,
             CASE WHEN g % 33 = 0 THEN 900 ELSE 200 + 100 * (abs(o - d) % 7) END,
             CASE WHEN g % 10 = 0 THEN 0 WHEN g % 33 = 0 THEN 900 ELSE 200 + 100 * (abs(o - d) % 7) END,
             'CNY', '{day}', e + 1200000
         FROM (SELECT g,
                      (((g * 2654435761) % 1000003) % 300) * (((g * 40503) % 997) % 300) / 300 AS o,
                      ((g * 69069) % 1000003) % 300 AS d,
                      {start} + 5 * 3600000 + (g * 1000003) % (19 * 3600000) AS e
               FROM {series} AS n) AS j",
        op = METRO_OPERATOR,
        day = day.name(),
        start = day.start_ms,
    );
    sqlx::query(&sql).execute(&mut conn).await.unwrap();
    sqlx::query("ANALYZE journeys")
        .execute(&mut conn)
        .await
        .unwrap();
    println!(
        "inserted {journeys} journeys in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let out = &scratch;
    let config = out.0.join("gateway.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{}\"\n", db.url())).unwrap();
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("gateway");
    let epsilon: Vec<String> = std::env::var("OPEN_DATA_EPSILON")
        .map(|e| vec!["--epsilon".to_string(), e])
        .unwrap_or_default();
    let output = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&bin)
        .args(["export", "open-data", "--date", &date.to_string(), "--out"])
        .arg(&out.0)
        .arg("--config")
        .arg(&config)
        .args(&epsilon)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    for line in stderr.lines() {
        if line.contains("Elapsed (wall clock)")
            || line.contains("Maximum resident")
            || line.contains("User time")
            || line.contains("System time")
        {
            println!("{}", line.trim());
        }
    }
    let dir = out.0.join(METRO_OPERATOR).join(date.to_string());
    check_package(&dir);
}
