//! The GTFS fare reader: a feed's files as an agency publishes them (any bytes), loaded and, if
//! it loads, every network priced between a few stops. Must never panic, abort or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The files a feed may carry; the input is split into them at 0xFF bytes, in this order.
const FILES: [&str; 8] = [
    "stops.txt",
    "areas.txt",
    "stop_areas.txt",
    "fare_products.txt",
    "fare_leg_rules.txt",
    "fare_transfer_rules.txt",
    "networks.txt",
    "routes.txt",
];

fuzz_target!(|data: &[u8]| {
    let texts: Vec<String> = data
        .split(|b| *b == 0xFF)
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    let files: Vec<(&str, &str)> = FILES
        .iter()
        .zip(&texts)
        .map(|(name, text)| (*name, text.as_str()))
        .collect();
    let Ok(feed) = turnpike_fares::GtfsFeed::from_files(&files) else {
        return;
    };
    if let Ok(metro) = feed.metro_fares("") {
        let stops: Vec<String> = metro.stops().iter().take(5).map(|s| s.id.clone()).collect();
        for from in &stops {
            for to in &stops {
                let _ = metro.price(from, to);
            }
        }
        let _ = (metro.min_fare(), metro.max_fare());
    }
});
