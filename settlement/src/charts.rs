//! Server-rendered SVG charts for the review UI: finance people look at the last weeks instead
//! of reading them — each operator's gross and net payable per day ([`line_chart`]), exceptions
//! by class or by age ([`bar_chart`]), the matched ratio per day ([`ratio_chart`]).
//!
//! Pure functions from numbers to inline SVG ([`maud::Markup`]): no script, no external
//! resource, no `style` attribute (the UI's Content-Security-Policy has no `'unsafe-inline'`).
//! Colours and fonts are presentation attributes (`fill`, `stroke`, `font-size`,
//! `text-anchor`), so a chart renders without the site stylesheet; every element also has a
//! `class` (`chart`, `chart-title`, `chart-grid`, `chart-axis`, `chart-series series-N`,
//! `chart-point`, `chart-legend`, `chart-bar`, `chart-nodata`) for the stylesheet to refine,
//! e.g. `svg.chart { width: 100%; height: auto }`.
//!
//! Accessibility: the `<svg>` is `role="img"`, labelled (`aria-labelledby`) by its `<title>` and
//! a `<desc>` that summarises the data in words (per series its latest, lowest and highest
//! value; every bar). Hovering a point or a bar shows its exact value in a `<title>` tooltip.
//! Series are told apart by a colour-blind-safe palette (Okabe–Ito), and beyond its seven
//! colours by dash patterns as well.
//!
//! Values are integers (money in minor units, counts); the caller formats them
//! (`format_value`, e.g. [`crate::money::format_minor`]). Floats only place pixels.

use std::borrow::Cow;
use std::fmt::Write as _;

use maud::{html, Markup};

/// One line of a [`line_chart`]: a name for the legend and `(x label, value)` points, e.g.
/// `("2026-01-02", 1_234_500)` for 12 345.00 CNY in fen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(String, i64)>,
}

/// The width of every chart's viewBox.
const WIDTH: f64 = 640.0;
/// The height of a line chart's viewBox with one legend row (each further row adds
/// [`LEGEND_ROW`]).
const HEIGHT: f64 = 240.0;
const FONT: f64 = 11.0;
const SMALL_FONT: f64 = 10.0;
const TITLE_FONT: f64 = 13.0;
/// The top of the plot area, under the visible title.
const PLOT_TOP: f64 = 30.0;
const LEGEND_ROW: f64 = 16.0;
/// A bar chart's row.
const BAR_ROW: f64 = 22.0;
const BAR_HEIGHT: f64 = 14.0;
/// Okabe–Ito, the colour-blind-safe palette, without its yellow (unreadable on white).
const PALETTE: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000",
];
/// After the seven colours, series repeat them with these dash patterns.
const DASHES: [Option<&str>; 4] = [None, Some("6 3"), Some("2 3"), Some("8 3 2 3")];
const TEXT: &str = "#222222";
const MUTED: &str = "#555555";
const GRID: &str = "#e3e3e3";
const AXIS: &str = "#888888";
/// How many y ticks a chart asks [`nice_ticks`] for.
const Y_TICKS: usize = 5;
/// How many entries a `<desc>` names before "and N more".
const DESC_ITEMS: usize = 30;

/// Ticks for an axis covering `min..=max`: at most `n` (at least 3 are asked for) evenly spaced
/// multiples of a nice step — 1, 2, 2.5 (from 25 up) or 5 times a power of ten — the smallest
/// such step that needs no more than `n` ticks. The first tick is ≤ `min`, the last ≥ `max`, and
/// 0 is a tick whenever the range spans it. A single value `m` gets the range `m..=m + 1`.
///
/// `nice_ticks(0, 1_234, 5)` is `[0, 500, 1000, 1500]`; `nice_ticks(-300, 1_000, 5)` is
/// `[-500, 0, 500, 1000]`; `nice_ticks(953, 1_000, 5)` is `[940, 960, 980, 1000]`.
pub fn nice_ticks(min: i64, max: i64, n: usize) -> Vec<i64> {
    let (lo, mut hi) = if min <= max {
        (i128::from(min), i128::from(max))
    } else {
        (i128::from(max), i128::from(min))
    };
    if lo == hi {
        hi = lo + 1;
    }
    let n = n.max(3) as i128;
    let mut pow: i128 = 1;
    // 10^20 > i64's whole range: a step that size always fits (two or three ticks).
    while pow <= 100_000_000_000_000_000_000 {
        let candidates = [
            pow,
            2 * pow,
            if pow >= 10 { pow * 5 / 2 } else { 0 },
            5 * pow,
        ];
        for step in candidates.into_iter().filter(|&s| s > 0) {
            let first = lo.div_euclid(step) * step;
            let last = -((-hi).div_euclid(step)) * step;
            if (last - first) / step < n {
                return (0..=(last - first) / step)
                    .map(|i| saturate(first + i * step))
                    .collect();
            }
        }
        pow *= 10;
    }
    vec![min.min(max), min.max(max)]
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// A line chart of `series` over their x labels: one coloured line per series with a marker
/// per point (its tooltip: series, x label and `format_value(value)`), y ticks from
/// [`nice_ticks`] always including 0 (net payable can be negative; the zero line is drawn
/// darker), x labels thinned to what fits (always keeping the latest), and a legend.
///
/// The x axis is the union of all series' labels sorted as text, so ISO dates
/// (`2026-01-02`) run in calendar order and a series missing a day simply joins its
/// neighbours. No series or no points renders a "No data" chart.
pub fn line_chart(title: &str, series: &[Series], format_value: &dyn Fn(i64) -> String) -> Markup {
    let mut x_labels: Vec<&str> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(x, _)| x.as_str()))
        .collect();
    x_labels.sort_unstable();
    x_labels.dedup();
    if x_labels.is_empty() {
        return no_data(title);
    }
    let index = |x: &str| x_labels.binary_search(&x).unwrap_or(0);

    let (mut lo, mut hi) = (0i64, 0i64);
    for (_, v) in series.iter().flat_map(|s| &s.points) {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    let ticks = nice_ticks(lo, hi, Y_TICKS);

    let mut desc = format!(
        "Line chart, {} series over {} from {} to {}.",
        series.len(),
        plural(x_labels.len(), "point", "points"),
        x_labels[0],
        x_labels[x_labels.len() - 1]
    );
    let lines: Vec<Line> = series
        .iter()
        .map(|s| {
            let mut pts: Vec<(usize, &str, i64)> = s
                .points
                .iter()
                .map(|(x, v)| (index(x), x.as_str(), *v))
                .collect();
            pts.sort_by_key(|p| p.0);
            describe_series(&mut desc, &s.name, &pts, format_value);
            Line {
                name: s.name.clone(),
                segments: vec![pts
                    .iter()
                    .map(|&(i, x, v)| Point {
                        x: i,
                        y: v,
                        tip: format!("{} · {}: {}", s.name, x, format_value(v)),
                    })
                    .collect()],
            }
        })
        .collect();

    Plot {
        title,
        desc,
        x_labels: &x_labels,
        ticks: &ticks,
        tick_label: format_value,
        lines: &lines,
        legend: true,
        class: "chart chart-line",
    }
    .render()
}

/// Horizontal bars — exceptions by class, by age bucket — in the given order: the label on
/// the left (shortened with "…" if long), the bar from a zero baseline (negative values to
/// its left, in another colour), `format_value(value)` on the right. Each bar's tooltip is its
/// identifier (the second field; the label when empty) and exact value. No bars renders a
/// "No data" chart.
pub fn bar_chart(
    title: &str,
    bars: &[(String, String, i64)],
    format_value: &dyn Fn(i64) -> String,
) -> Markup {
    if bars.is_empty() {
        return no_data(title);
    }
    let values: Vec<String> = bars.iter().map(|(_, _, v)| format_value(*v)).collect();
    let label_w = bars
        .iter()
        .map(|(l, _, _)| text_width(l, FONT))
        .fold(0.0, f64::max)
        .min(220.0);
    let value_w = values
        .iter()
        .map(|v| text_width(v, FONT))
        .fold(0.0, f64::max)
        .min(200.0);
    let bar_left = 8.0 + label_w + 8.0;
    let bar_right = (WIDTH - 8.0 - value_w - 8.0).max(bar_left + 40.0);
    let lo = bars.iter().map(|b| b.2).min().unwrap_or(0).min(0);
    let hi = bars.iter().map(|b| b.2).max().unwrap_or(0).max(0);
    let span = if hi > lo {
        (hi as f64) - (lo as f64)
    } else {
        1.0
    };
    let scale = |v: i64| bar_left + ((v as f64) - (lo as f64)) / span * (bar_right - bar_left);
    let zero_x = scale(0);
    let height = PLOT_TOP + bars.len() as f64 * BAR_ROW + 8.0;

    let mut desc = format!("Bar chart, {}:", plural(bars.len(), "bar", "bars"));
    for (i, ((label, _, _), value)) in bars.iter().zip(&values).enumerate() {
        if i == DESC_ITEMS {
            let _ = write!(desc, " and {} more", bars.len() - DESC_ITEMS);
            break;
        }
        let _ = write!(desc, "{} {label} {value}", if i == 0 { "" } else { ";" });
    }
    desc.push('.');
    let id = chart_id(title, &desc);

    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="chart chart-bar" role="img"
            aria-labelledby={ (id) "-t " (id) "-d" } viewBox={ "0 0 " (px(WIDTH)) " " (px(height)) }
            width=(px(WIDTH)) height=(px(height)) font-family="sans-serif" font-size=(px(FONT)) {
            title id={ (id) "-t" } { (clean(title)) }
            desc id={ (id) "-d" } { (clean(&desc)) }
            (chart_title(title))
            @if lo < 0 {
                line class="chart-axis" x1=(px(zero_x)) x2=(px(zero_x)) y1=(px(PLOT_TOP - 4.0))
                    y2=(px(height - 6.0)) stroke=(AXIS) {}
            }
            @for (i, ((label, tip, v), value)) in bars.iter().zip(&values).enumerate() {
                @let top = PLOT_TOP + i as f64 * BAR_ROW;
                @let baseline = top + BAR_ROW / 2.0 + FONT * 0.35;
                @let end = scale(*v);
                @let tip = if tip.is_empty() { label } else { tip };
                g class="chart-bar" {
                    title { (clean(tip)) ": " (clean(value)) }
                    text x=(px(bar_left - 8.0)) y=(px(baseline)) text-anchor="end" fill=(TEXT) {
                        (clean(&shorten(label, label_w, FONT)))
                    }
                    rect x=(px(zero_x.min(end))) y=(px(top + (BAR_ROW - BAR_HEIGHT) / 2.0))
                        width=(px((end - zero_x).abs())) height=(px(BAR_HEIGHT))
                        fill=(if *v < 0 { PALETTE[3] } else { PALETTE[0] }) {}
                    text x=(px(WIDTH - 8.0)) y=(px(baseline)) text-anchor="end" fill=(TEXT) {
                        (clean(value))
                    }
                }
            }
        }
    }
}

/// The matched ratio per day — `(x label, matched, total)` in the given order — as a line in
/// percent with one decimal ("99.6 %"). Ratios are near 100 %, so the y axis starts at the
/// lowest ratio rounded down to a nice step (99.6 % → 99.6, 95.3 % → 94.0; all 100 % → 99.0)
/// and ends at 100 %. A ratio is rounded down, so only a day with everything matched shows
/// 100.0 %; `matched` above `total` counts as `total`. A day with no transactions (`total` 0)
/// has no point and breaks the line. No points renders a "No data" chart.
pub fn ratio_chart(title: &str, points: &[(String, u64, u64)]) -> Markup {
    if points.is_empty() {
        return no_data(title);
    }
    let tenths: Vec<Option<i64>> = points
        .iter()
        .map(|&(_, matched, total)| {
            (total > 0).then(|| (u128::from(matched.min(total)) * 1000 / u128::from(total)) as i64)
        })
        .collect();
    let lowest = tenths.iter().flatten().copied().min().unwrap_or(1000);
    let floor = if lowest >= 1000 { 990 } else { lowest };
    let ticks: Vec<i64> = nice_ticks(floor, 1000, Y_TICKS)
        .into_iter()
        .filter(|&t| t <= 1000)
        .collect();

    let x_labels: Vec<&str> = points.iter().map(|(x, _, _)| x.as_str()).collect();
    let mut segments: Vec<Vec<Point>> = vec![Vec::new()];
    let mut empty_days = Vec::new();
    for (i, ((x, matched, total), t)) in points.iter().zip(&tenths).enumerate() {
        match t {
            Some(t) => segments.last_mut().expect("one segment").push(Point {
                x: i,
                y: *t,
                tip: format!(
                    "{x}: {} ({} of {} matched)",
                    percent(*t),
                    matched.min(total),
                    total
                ),
            }),
            None => {
                empty_days.push(x.as_str());
                segments.push(Vec::new());
            }
        }
    }
    segments.retain(|s| !s.is_empty());

    let mut desc = format!(
        "Matched ratio per day, {} from {} to {}",
        plural(points.len(), "day", "days"),
        x_labels[0],
        x_labels[x_labels.len() - 1]
    );
    let known: Vec<(usize, &str, i64)> = tenths
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.map(|t| (i, x_labels[i], t)))
        .collect();
    if known.is_empty() {
        desc.push_str(": no transactions.");
    } else {
        desc.push('.');
        describe_series(&mut desc, "Matched", &known, &percent);
    }
    if !empty_days.is_empty() && !known.is_empty() {
        let _ = write!(desc, " No transactions on {}.", list(&empty_days));
    }

    let lines = [Line {
        name: "Matched".into(),
        segments,
    }];
    Plot {
        title,
        desc,
        x_labels: &x_labels,
        ticks: &ticks,
        tick_label: &percent,
        lines: &lines,
        legend: false,
        class: "chart chart-ratio",
    }
    .render()
}

/// Tenths of a percent as text: 996 → "99.6 %".
fn percent(tenths: i64) -> String {
    format!("{}.{} %", tenths / 10, (tenths % 10).abs())
}

struct Point {
    /// Index into the x labels.
    x: usize,
    y: i64,
    tip: String,
}

struct Line {
    name: String,
    /// Points joined by a line; a gap between segments.
    segments: Vec<Vec<Point>>,
}

/// A line plot ready to draw: what [`line_chart`] and [`ratio_chart`] share.
struct Plot<'a> {
    title: &'a str,
    desc: String,
    x_labels: &'a [&'a str],
    /// Ascending; the y axis runs from the first to the last.
    ticks: &'a [i64],
    tick_label: &'a dyn Fn(i64) -> String,
    lines: &'a [Line],
    legend: bool,
    class: &'a str,
}

impl Plot<'_> {
    fn render(&self) -> Markup {
        let tick_labels: Vec<String> = self.ticks.iter().map(|&t| (self.tick_label)(t)).collect();
        let plot_left = (tick_labels
            .iter()
            .map(|l| text_width(l, SMALL_FONT))
            .fold(0.0, f64::max)
            + 14.0)
            .clamp(36.0, 240.0);
        let plot_right = WIDTH - 12.0;

        // Legend entries: (x, row, name shortened to fit).
        let mut legend = Vec::new();
        let (mut lx, mut row) = (8.0, 0usize);
        if self.legend {
            for l in self.lines {
                let name = shorten(&l.name, 200.0, FONT);
                let w = 22.0 + text_width(&name, FONT) + 14.0;
                if lx > 8.0 && lx + w > WIDTH - 8.0 {
                    lx = 8.0;
                    row += 1;
                }
                legend.push((lx, row, name));
                lx += w;
            }
        }
        let legend_h = if legend.is_empty() {
            0.0
        } else {
            (row + 1) as f64 * LEGEND_ROW
        };
        let height = HEIGHT - LEGEND_ROW + legend_h;
        let plot_bottom = height - 8.0 - legend_h - 20.0;

        let (lo, hi) = (
            *self.ticks.first().unwrap_or(&0) as f64,
            *self.ticks.last().unwrap_or(&1) as f64,
        );
        let span = if hi > lo { hi - lo } else { 1.0 };
        let y = |v: i64| plot_bottom - ((v as f64) - lo) / span * (plot_bottom - PLOT_TOP);
        let n = self.x_labels.len();
        let (inner_left, inner_right) = (plot_left + 8.0, plot_right - 8.0);
        let x = |i: usize| {
            if n <= 1 {
                (inner_left + inner_right) / 2.0
            } else {
                inner_left + i as f64 * (inner_right - inner_left) / (n - 1) as f64
            }
        };
        // Thin the x labels to what fits, counting back from the latest.
        let label_w = self
            .x_labels
            .iter()
            .map(|l| text_width(l, SMALL_FONT))
            .fold(0.0, f64::max)
            + 10.0;
        let fit = (((inner_right - inner_left) + label_w) / label_w)
            .floor()
            .max(1.0) as usize;
        let every = n.div_ceil(fit).max(1);

        let id = chart_id(self.title, &self.desc);
        html! {
            svg xmlns="http://www.w3.org/2000/svg" class=(self.class) role="img"
                aria-labelledby={ (id) "-t " (id) "-d" } viewBox={ "0 0 " (px(WIDTH)) " " (px(height)) }
                width=(px(WIDTH)) height=(px(height)) font-family="sans-serif" font-size=(px(FONT)) {
                title id={ (id) "-t" } { (clean(self.title)) }
                desc id={ (id) "-d" } { (clean(&self.desc)) }
                (chart_title(self.title))
                g class="chart-grid" {
                    @for (t, label) in self.ticks.iter().zip(&tick_labels) {
                        line x1=(px(plot_left)) x2=(px(plot_right)) y1=(px(y(*t))) y2=(px(y(*t)))
                            stroke=(if *t == 0 { AXIS } else { GRID }) {}
                        text x=(px(plot_left - 6.0)) y=(px(y(*t) + SMALL_FONT * 0.35)) text-anchor="end"
                            font-size=(px(SMALL_FONT)) fill=(MUTED) { (clean(label)) }
                    }
                }
                g class="chart-axis" {
                    line x1=(px(plot_left)) x2=(px(plot_left)) y1=(px(PLOT_TOP)) y2=(px(plot_bottom))
                        stroke=(AXIS) {}
                    @for (i, label) in self.x_labels.iter().enumerate() {
                        @if (n - 1 - i).is_multiple_of(every) {
                            // Centred under its point, but kept inside the chart.
                            @let half = text_width(label, SMALL_FONT) / 2.0 + 2.0;
                            @let lx = x(i).min(WIDTH - half).max(half);
                            text x=(px(lx)) y=(px(plot_bottom + 14.0)) text-anchor="middle"
                                font-size=(px(SMALL_FONT)) fill=(MUTED) { (clean(label)) }
                        }
                    }
                }
                @for (s, line) in self.lines.iter().enumerate() {
                    @let (colour, dash) = (PALETTE[s % PALETTE.len()], DASHES[(s / PALETTE.len()) % DASHES.len()]);
                    g class={ "chart-series series-" (s) } {
                        @for seg in &line.segments {
                            @if seg.len() > 1 {
                                path d=(path(seg.iter().map(|p| (x(p.x), y(p.y))))) fill="none"
                                    stroke=(colour) stroke-width="2" stroke-linejoin="round"
                                    stroke-dasharray=[dash] {}
                            }
                            @for p in seg {
                                g class="chart-point" {
                                    title { (clean(&p.tip)) }
                                    circle cx=(px(x(p.x))) cy=(px(y(p.y))) r="3" fill=(colour) {}
                                    circle cx=(px(x(p.x))) cy=(px(y(p.y))) r="8" fill="transparent" {}
                                }
                            }
                        }
                    }
                }
                @if !legend.is_empty() {
                    g class="chart-legend" {
                        @for (s, (lx, row, name)) in legend.iter().enumerate() {
                            @let ly = plot_bottom + 20.0 + (*row as f64 + 0.5) * LEGEND_ROW;
                            line x1=(px(*lx)) x2=(px(lx + 16.0)) y1=(px(ly)) y2=(px(ly))
                                stroke=(PALETTE[s % PALETTE.len()]) stroke-width="3"
                                stroke-dasharray=[DASHES[(s / PALETTE.len()) % DASHES.len()]] {}
                            text x=(px(lx + 22.0)) y=(px(ly + FONT * 0.35)) fill=(TEXT) { (clean(name)) }
                        }
                    }
                }
            }
        }
    }
}

/// The chart drawn when there is nothing to draw: its title and "No data".
fn no_data(title: &str) -> Markup {
    let desc = "No data.";
    let id = chart_id(title, desc);
    let height = 80.0;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="chart chart-empty" role="img"
            aria-labelledby={ (id) "-t " (id) "-d" } viewBox={ "0 0 " (px(WIDTH)) " " (px(height)) }
            width=(px(WIDTH)) height=(px(height)) font-family="sans-serif" font-size=(px(FONT)) {
            title id={ (id) "-t" } { (clean(title)) }
            desc id={ (id) "-d" } { (desc) }
            (chart_title(title))
            text class="chart-nodata" x=(px(WIDTH / 2.0)) y="52" text-anchor="middle" fill=(MUTED) {
                "No data"
            }
        }
    }
}

fn chart_title(title: &str) -> Markup {
    html! {
        text class="chart-title" x="8" y="18" font-size=(px(TITLE_FONT)) font-weight="bold" fill=(TEXT) {
            (clean(title))
        }
    }
}

/// Appends " NAME: latest V (X), lowest V (X), highest V (X)." to a `<desc>`.
fn describe_series(
    desc: &mut String,
    name: &str,
    pts: &[(usize, &str, i64)],
    format_value: &dyn Fn(i64) -> String,
) {
    let (Some(latest), Some(low), Some(high)) = (
        pts.last(),
        pts.iter().min_by_key(|p| p.2),
        pts.iter().max_by_key(|p| p.2),
    ) else {
        let _ = write!(desc, " {name}: no data.");
        return;
    };
    let _ = write!(
        desc,
        " {name}: latest {} ({}), lowest {} ({}), highest {} ({}).",
        format_value(latest.2),
        latest.1,
        format_value(low.2),
        low.1,
        format_value(high.2),
        high.1
    );
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "a, b and c", the first [`DESC_ITEMS`] of them.
fn list(items: &[&str]) -> String {
    let shown = &items[..items.len().min(DESC_ITEMS)];
    let mut out = shown.join(", ");
    if items.len() > shown.len() {
        let _ = write!(out, " and {} more", items.len() - shown.len());
    }
    out
}

/// An SVG path through the points.
fn path(points: impl Iterator<Item = (f64, f64)>) -> String {
    let mut d = String::new();
    for (i, (x, y)) in points.enumerate() {
        let _ = write!(d, "{}{},{}", if i == 0 { "M" } else { " L" }, px(x), px(y));
    }
    d
}

/// A coordinate with at most one decimal.
fn px(v: f64) -> String {
    let s = format!("{v:.1}");
    match s.strip_suffix(".0") {
        Some(int) if int != "-0" => int.to_string(),
        Some(_) => "0".to_string(),
        None => s,
    }
}

/// An estimate of a text's width in pixels (no font metrics on the server): wide (CJK)
/// characters take a full em, others 0.6 em.
fn text_width(s: &str, size: f64) -> f64 {
    s.chars()
        .map(|c| if is_wide(c) { size } else { size * 0.6 })
        .sum()
}

fn is_wide(c: char) -> bool {
    matches!(c as u32, 0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD)
}

/// `s` cut to at most `max` pixels wide, ending in "…" when cut.
fn shorten(s: &str, max: f64, size: f64) -> Cow<'_, str> {
    if text_width(s, size) <= max {
        return Cow::Borrowed(s);
    }
    let mut out = String::new();
    let mut w = size * 0.6; // the ellipsis
    for c in s.chars() {
        w += if is_wide(c) { size } else { size * 0.6 };
        if w > max {
            break;
        }
        out.push(c);
    }
    out.push('…');
    Cow::Owned(out)
}

/// Text safe for XML 1.0: characters it cannot carry (control characters other than tab and
/// line ends, U+FFFE, U+FFFF) become U+FFFD. maud escapes the markup characters.
fn clean(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    };
    if s.chars().any(bad) {
        Cow::Owned(
            s.chars()
                .map(|c| if bad(c) { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// An id for the chart's `<title>` and `<desc>`, unique on a page of different charts and the
/// same on every render of the same one: a slug of the title and a hash of title and summary.
fn chart_id(title: &str, desc: &str) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 32 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    // FNV-1a, 32 bits.
    let mut h: u32 = 0x811c_9dc5;
    for b in title.bytes().chain([0]).chain(desc.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    if slug.is_empty() {
        format!("chart-{h:08x}")
    } else {
        format!("chart-{slug}-{h:08x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::format_minor;

    fn cny(v: i64) -> String {
        format_minor(v, "CNY")
    }

    fn series(name: &str, points: &[(&str, i64)]) -> Series {
        Series {
            name: name.into(),
            points: points.iter().map(|(x, v)| (x.to_string(), *v)).collect(),
        }
    }

    /// Parses the SVG as XML and returns the text of every `<title>` element.
    fn titles(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(root.attribute("role"), Some("img"));
        assert!(root.attribute("style").is_none());
        assert!(doc.descendants().all(|n| n.attribute("style").is_none()));
        assert!(!svg.contains("href"), "no external resources: {svg}");
        // aria-labelledby names the chart's own title and desc.
        let ids: Vec<&str> = root
            .attribute("aria-labelledby")
            .unwrap()
            .split(' ')
            .collect();
        assert_eq!(ids.len(), 2);
        for (id, tag) in ids.iter().zip(["title", "desc"]) {
            let n = doc
                .descendants()
                .find(|n| n.attribute("id") == Some(id))
                .unwrap();
            assert_eq!(n.tag_name().name(), tag);
            assert!(!n.text().unwrap_or("").is_empty());
        }
        doc.descendants()
            .filter(|n| n.has_tag_name("title"))
            .map(|n| n.text().unwrap_or("").to_string())
            .collect()
    }

    fn desc(svg: &str) -> String {
        let doc = roxmltree::Document::parse(svg).unwrap();
        let d = doc.descendants().find(|n| n.has_tag_name("desc")).unwrap();
        d.text().unwrap().to_string()
    }

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        assert_eq!(nice_ticks(0, 1_234, 5), vec![0, 500, 1000, 1500]);
        assert_eq!(nice_ticks(0, 100, 5), vec![0, 25, 50, 75, 100]);
        assert_eq!(nice_ticks(-300, 1_000, 5), vec![-500, 0, 500, 1000]);
        assert_eq!(nice_ticks(953, 1_000, 5), vec![940, 960, 980, 1000]);
        assert_eq!(nice_ticks(996, 1_000, 5), vec![996, 997, 998, 999, 1000]);
        assert_eq!(nice_ticks(0, 0, 5), vec![0, 1]);
        assert_eq!(nice_ticks(1_000, 0, 5), vec![0, 250, 500, 750, 1000]);
        assert_eq!(nice_ticks(-7, -7, 5), vec![-7, -6]);
        // Asking for fewer than three still gives a zero-spanning axis an answer.
        assert_eq!(nice_ticks(-1, 1, 1), vec![-1, 0, 1]);
        for (lo, hi) in [
            (0, 1),
            (0, 7),
            (-5, 3),
            (123, 98_765),
            (-1_234_567, 89),
            (37, 41),
            (0, 999_999_999_999),
            (i64::MIN, i64::MAX),
            (i64::MAX - 5, i64::MAX),
        ] {
            let t = nice_ticks(lo, hi, 5);
            assert!((2..=5).contains(&t.len()), "{lo}..{hi}: {t:?}");
            assert!(t[0] <= lo && *t.last().unwrap() >= hi, "{lo}..{hi}: {t:?}");
            // (The middle pair: an end tick may be saturated at i64's limits.)
            let step = i128::from(t[t.len() / 2]) - i128::from(t[t.len() / 2 - 1]);
            let mantissa = {
                let mut m = step;
                while m % 10 == 0 {
                    m /= 10;
                }
                m
            };
            assert!([1, 2, 25, 5].contains(&mantissa), "{lo}..{hi}: {t:?}");
            if lo > i64::MIN && hi < i64::MAX {
                assert!(t
                    .windows(2)
                    .all(|w| i128::from(w[1]) - i128::from(w[0]) == step));
                assert!(t.iter().all(|v| i128::from(*v) % step == 0));
                if lo <= 0 && hi >= 0 {
                    assert!(t.contains(&0), "{lo}..{hi}: {t:?}");
                }
            }
        }
    }

    #[test]
    fn line_chart_is_xml_with_every_exact_value_in_a_title() {
        let data = [
            series(
                "Metro Line 1",
                &[
                    ("2026-01-01", 1_234_567),
                    ("2026-01-02", 2_000_001),
                    ("2026-01-03", 987_654),
                ],
            ),
            series(
                "Bus <B&C> \"East\"",
                &[("2026-01-02", 5_00), ("2026-01-03", 12)],
            ),
        ];
        let svg = line_chart("Gross per operator", &data, &cny).into_string();
        let tips = titles(&svg);
        assert_eq!(tips[0], "Gross per operator");
        for s in &data {
            for (x, v) in &s.points {
                let tip = format!("{} · {}: {}", s.name, x, cny(*v));
                assert!(tips.contains(&tip), "{tip} missing: {tips:?}");
            }
        }
        let d = desc(&svg);
        assert!(
            d.contains(&format!("latest {} (2026-01-03)", cny(987_654))),
            "{d}"
        );
        assert!(
            d.contains(&format!("highest {} (2026-01-02)", cny(2_000_001))),
            "{d}"
        );
        // One colour per series, a legend entry per series.
        assert!(svg.contains("series-0") && svg.contains("series-1"));
        assert!(svg.contains(PALETTE[0]) && svg.contains(PALETTE[1]));
        assert!(svg.contains("chart-legend") && svg.contains("Metro Line 1"));
        assert!(!svg.contains("style="));
        // Rendering is deterministic.
        assert_eq!(
            svg,
            line_chart("Gross per operator", &data, &cny).into_string()
        );
    }

    #[test]
    fn line_chart_handles_negative_values() {
        let data = [series(
            "Net payable",
            &[
                ("2026-01-01", 10_000),
                ("2026-01-02", -25_050),
                ("2026-01-03", 0),
            ],
        )];
        let svg = line_chart("Net payable", &data, &cny).into_string();
        let tips = titles(&svg);
        assert!(tips.contains(&format!("Net payable · 2026-01-02: {}", cny(-25_050))));
        // The axis reaches below the lowest value and has a zero line.
        let ticks = nice_ticks(-25_050, 10_000, Y_TICKS);
        assert!(ticks[0] <= -25_050 && ticks.contains(&0));
        assert!(svg.contains(&format!(">{}<", cny(ticks[0]))), "{svg}");
        assert!(svg.contains(&format!("stroke=\"{AXIS}\"")));
    }

    #[test]
    fn empty_single_and_all_zero_charts_render() {
        for svg in [
            line_chart("Nothing", &[], &cny),
            line_chart("Nothing", &[series("A", &[])], &cny),
            bar_chart("Nothing", &[], &cny),
            ratio_chart("Nothing", &[]),
        ] {
            let svg = svg.into_string();
            titles(&svg);
            assert!(svg.contains(">No data<"), "{svg}");
        }

        let one = line_chart("One", &[series("A", &[("2026-01-01", 42)])], &cny).into_string();
        assert!(titles(&one).contains(&"A · 2026-01-01: 0.42 CNY".to_string()));
        assert!(
            !one.contains("<path"),
            "a single point is a marker, not a line"
        );
        assert!(one.contains("<circle"));

        let zeros = line_chart(
            "Zeros",
            &[series("A", &[("2026-01-01", 0), ("2026-01-02", 0)])],
            &cny,
        )
        .into_string();
        assert!(titles(&zeros).contains(&"A · 2026-01-02: 0.00 CNY".to_string()));
        assert!(!zeros.contains("NaN") && !zeros.contains("inf"));
    }

    #[test]
    fn x_labels_are_thinned_keeping_the_latest() {
        let points: Vec<(String, i64)> = (1..=60)
            .map(|d| {
                (
                    format!("2026-{:02}-{:02}", 1 + (d - 1) / 28, 1 + (d - 1) % 28),
                    d * 100,
                )
            })
            .collect();
        let data = [Series {
            name: "A".into(),
            points: points.clone(),
        }];
        let svg = line_chart("Sixty days", &data, &cny).into_string();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let shown: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text") && n.attribute("text-anchor") == Some("middle"))
            .filter_map(|n| n.text())
            .collect();
        assert!(shown.len() >= 4 && shown.len() <= 12, "{shown:?}");
        assert_eq!(shown.last(), Some(&points[59].0.as_str()));
        // Every point keeps its tooltip.
        assert_eq!(
            titles(&svg)
                .iter()
                .filter(|t| t.starts_with("A · "))
                .count(),
            60
        );
    }

    #[test]
    fn series_beyond_the_palette_get_dashes_and_text_is_xml_safe() {
        let data: Vec<Series> = (0..9)
            .map(|i| series(&format!("Op {i}\u{1}"), &[("d1", i), ("d2", -i)]))
            .collect();
        let svg = line_chart("Many\u{0}", &data, &cny).into_string();
        titles(&svg);
        assert!(svg.contains("stroke-dasharray=\"6 3\""));
        assert!(svg.contains("Op 8\u{FFFD}"));
    }

    #[test]
    fn bar_chart_shows_labels_values_and_tooltips() {
        let bars = vec![
            (
                "missing_at_provider".to_string(),
                "class missing_at_provider".to_string(),
                120,
            ),
            ("amount_mismatch".to_string(), String::new(), 7),
            ("0–1 d".to_string(), "age 0-1 days".to_string(), 0),
            ("refund <reversal>".to_string(), "neg".to_string(), -3),
        ];
        let count = |v: i64| format!("{v} open");
        let svg = bar_chart("Exceptions by class", &bars, &count).into_string();
        let tips = titles(&svg);
        assert!(tips.contains(&"class missing_at_provider: 120 open".to_string()));
        assert!(tips.contains(&"amount_mismatch: 7 open".to_string()));
        assert!(tips.contains(&"neg: -3 open".to_string()));
        assert!(svg.contains(">120 open<") && svg.contains(">refund &lt;reversal&gt;<"));
        assert_eq!(svg.matches("<rect").count(), 4);
        let d = desc(&svg);
        assert!(
            d.starts_with("Bar chart, 4 bars: missing_at_provider 120 open;"),
            "{d}"
        );
    }

    #[test]
    fn ratio_chart_starts_near_the_lowest_ratio() {
        let points = vec![
            ("2026-01-01".to_string(), 996, 1_000),
            ("2026-01-02".to_string(), 9_999, 10_000),
            ("2026-01-03".to_string(), 0, 0),
            ("2026-01-04".to_string(), 1_000, 1_000),
        ];
        let svg = ratio_chart("Matched ratio", &points).into_string();
        let tips = titles(&svg);
        assert!(tips.contains(&"2026-01-01: 99.6 % (996 of 1000 matched)".to_string()));
        // Rounded down: not everything matched is not 100.0 %.
        assert!(tips.contains(&"2026-01-02: 99.9 % (9999 of 10000 matched)".to_string()));
        assert!(tips.contains(&"2026-01-04: 100.0 % (1000 of 1000 matched)".to_string()));
        assert!(svg.contains(">99.6 %<") && svg.contains(">100.0 %<"));
        assert!(!svg.contains(">0.0 %<"), "the axis does not start at 0");
        let d = desc(&svg);
        assert!(d.contains("lowest 99.6 % (2026-01-01)"), "{d}");
        assert!(d.contains("No transactions on 2026-01-03."), "{d}");
        // The day without transactions breaks the line into two.
        assert_eq!(svg.matches("<path").count(), 1, "{svg}");

        let perfect =
            ratio_chart("All matched", &[("d".into(), 5, 5), ("e".into(), 7, 7)]).into_string();
        titles(&perfect);
        assert!(perfect.contains(">99.0 %<") && perfect.contains(">100.0 %<"));

        let low = ratio_chart(
            "Low",
            &[("d".into(), 953, 1_000), ("e".into(), 2_000, 1_000)],
        )
        .into_string();
        assert!(low.contains(">94.0 %<") && !low.contains(">100.2 %<"));
        assert!(titles(&low).contains(&"e: 100.0 % (1000 of 1000 matched)".to_string()));

        let none = ratio_chart("Quiet", &[("d".into(), 0, 0)]).into_string();
        titles(&none);
        assert!(desc(&none).contains("no transactions"));
    }
}
