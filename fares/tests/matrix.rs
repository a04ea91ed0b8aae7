//! The station-to-station fare matrix loader: direction semantics and line-precise errors.

mod files;

use turnpike_fares::{FareError, MetroFares};

const STOPS: &str = "stop_id,stop_name\na,Alpha\nb,Bravo\nc,Charlie\n";

fn load(matrix: &str) -> Result<MetroFares, String> {
    MetroFares::from_matrix_csv(("stops.csv", STOPS), ("fare_matrix.csv", matrix))
        .map_err(|e| e.to_string())
}

/// `expected` is an amount such as "3.00", or the error's message.
fn check(fares: &MetroFares, from: &str, to: &str, expected: &str) {
    let got = match fares.price(from, to) {
        Ok(m) => m.amount().to_string(),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expected, "{from} -> {to}");
}

#[test]
fn symmetric_flag_and_directions() {
    // Proves that a row prices one direction unless `symmetric` is 1, that a pair absent from the
    // matrix (including same-stop) has no fare, and that min and max cover every priced pair.
    let fares = load(
        "from_stop_id,to_stop_id,amount,currency,symmetric
a,b,3.00,CNY,1
a,c,4,CNY,0
c,a,5.00,CNY,
b,b,2.00,CNY,1
",
    )
    .unwrap();
    let table = [
        ("a", "b", "3.00"),
        ("b", "a", "3.00"),
        ("a", "c", "4.00"),
        ("c", "a", "5.00"),
        ("b", "b", "2.00"),
        ("a", "a", r#"no fare rule from "a" to "a""#),
        ("b", "c", r#"no fare rule from "b" to "c""#),
        ("a", "zz", r#"unknown stop "zz""#),
    ];
    for (from, to, expected) in table {
        check(&fares, from, to, expected);
    }
    assert_eq!(fares.min_fare().to_minor(), 200);
    assert_eq!(fares.max_fare().to_minor(), 500);
    assert_eq!(fares.stops().len(), 3);
    assert_eq!(fares.stop("c").map(|s| s.name.as_str()), Some("Charlie"));
    assert_eq!(
        fares.price("zz", "a"),
        Err(FareError::UnknownStop {
            stop_id: "zz".to_string()
        })
    );
}

#[test]
fn matrix_errors_name_file_line_and_reason() {
    // Proves that every kind of bad matrix is refused with its file, line and a precise reason.
    let header = "from_stop_id,to_stop_id,amount,currency,symmetric\n";
    let table = [
        ("a,b,3.00,CNY,1\na,zz,3.00,CNY,\n", r#"fare_matrix.csv line 3: unknown to_stop_id "zz" (not in stops.csv)"#),
        ("a,b,3.00,CNY,1\nb,a,3.00,CNY,\n", r#"fare_matrix.csv line 3: duplicate fare for "b -> a" (first on line 2)"#),
        ("a,b,3.00,CNY,\na,b,4.00,CNY,\n", r#"fare_matrix.csv line 3: duplicate fare for "a -> b" (first on line 2)"#),
        ("a,b,3.005,CNY,\n", r#"fare_matrix.csv line 2: amount "3.005" has more decimal places than CNY allows"#),
        ("a,b,-3.00,CNY,\n", r#"fare_matrix.csv line 2: `amount` is "-3.00": a fare cannot be negative"#),
        ("a,b,3.00,CNY,yes\n", r#"fare_matrix.csv line 2: `symmetric` is "yes": expected 1, 0 or empty"#),
        ("a,b,3.00,CNY,\nb,a,3.00,USD,\n", "fare_matrix.csv line 3: currency USD differs from CNY used on line 2; one table, one currency"),
        ("a,b,,CNY,\n", "fare_matrix.csv line 2: required value `amount` is empty"),
        ("", "fare_matrix.csv: the matrix has no fares"),
    ];
    for (rows, expected) in table {
        let matrix = format!("{header}{rows}");
        assert_eq!(
            load(&matrix).err().as_deref(),
            Some(expected),
            "rows:\n{rows}"
        );
    }
    assert_eq!(
        load("from_stop_id,to_stop_id,amount\na,b,3\n")
            .err()
            .as_deref(),
        Some("fare_matrix.csv line 1: missing required column `currency`")
    );
}

#[test]
fn stops_file_errors() {
    // Proves the stops file of a matrix is checked too: duplicate ids and empty names.
    let matrix = "from_stop_id,to_stop_id,amount,currency\na,a,2,CNY\n";
    let table = [
        (
            "stop_id,stop_name\na,A\na,B\n",
            r#"stops.csv line 3: duplicate stop_id "a" (first on line 2)"#,
        ),
        (
            "stop_id,stop_name\na,\n",
            "stops.csv line 2: required value `stop_name` is empty",
        ),
        (
            "stop_id\na\n",
            "stops.csv line 1: missing required column `stop_name`",
        ),
        ("stop_id,stop_name\n", "stops.csv: no stops"),
    ];
    for (stops, expected) in table {
        let got = MetroFares::from_matrix_csv(("stops.csv", stops), ("fare_matrix.csv", matrix))
            .err()
            .map(|e| e.to_string());
        assert_eq!(got.as_deref(), Some(expected));
    }
}

#[test]
fn shipped_matrix_files_load() {
    // Proves the shipped demo matrix, read from disk by the test (the crate does no I/O), loads
    // and prices the line end to end; errors name the files by the names given with the text.
    let dir = files::data_dir("demo-metro");
    let stations = files::read(&dir, "stations.csv").unwrap();
    let matrix = files::read(&dir, "fare_matrix.csv").unwrap();
    let fares =
        MetroFares::from_matrix_csv(("stations.csv", &stations), ("fare_matrix.csv", &matrix))
            .unwrap();
    assert_eq!(fares.price("xianghu", "linping").unwrap().to_minor(), 900);
    let empty = MetroFares::from_matrix_csv(("stations.csv", &stations), ("nope.csv", ""));
    assert_eq!(
        empty.err().map(|e| e.to_string()).as_deref(),
        Some("nope.csv: file is empty (no header line)")
    );
}

/// Proves a matrix of 600,000 stops whose ids differ only in their last characters loads in
/// linear time: the index's hash mixes every byte (a hash whose low bits ignored later bytes made
/// this load quadratic and the gateway's upload time out).
#[test]
fn many_similar_stop_ids_load_quickly() {
    let mut stops = String::from("stop_id,stop_name\n");
    for i in 0..600_000 {
        stops.push_str(&format!("s{i},S{i}\n"));
    }
    let matrix = "from_stop_id,to_stop_id,amount,currency\ns0,s599999,4.00,CNY\n";
    let fares =
        MetroFares::from_matrix_csv(("stops.csv", &stops), ("fare_matrix.csv", matrix)).unwrap();
    assert_eq!(fares.price("s0", "s599999").unwrap().to_minor(), 400);
}
