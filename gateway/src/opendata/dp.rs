//! Differential privacy for the open-data export, as pure functions (no database, clock or
//! I/O; the caller passes the random number generator): the budget, the exact sampler of the
//! two-sided geometric mechanism, and the threshold below which a noisy cell is withheld.
//! docs/open-data.md, "Differential privacy", says why each piece is what it is.
//!
//! # The guarantee
//! Neighbouring days differ by one rider: all of that rider's journeys of the business day are
//! there or not. The store counts at most `C` journeys per rider (the first `C` by entry time),
//! so one rider changes one table's cells by at most `C` in total (L1) and makes at most `C`
//! cells non-empty. Each non-empty cell gets independent noise `Z` with
//! `P[Z = z] ∝ exp(-ε_t·|z|/C)` (ε-DP for the cells that exist either way), and a cell is
//! released only when its noisy count is at least `τ`: the cells only this rider made
//! non-empty are released with probability at most [`delta_at`] (the δ).
//! Each table spends (ε/2, δ/2) of the package's (ε, δ): basic composition.
//!
//! # No floating point in the noise
//! The sampler is Canonne, Kamath & Steinke (2020), "The Discrete Gaussian for Differential
//! Privacy", Algorithms 1 and 2: Bernoulli trials with rational probabilities drawn from
//! uniform integers, so the pmf is exact and there is no floating-point hole of the kind
//! Mironov (2012) found in textbook Laplace samplers. That is why ε is a decimal kept in
//! millionths, not an `f64`. Floating point only chooses τ, a public parameter, and rounds it
//! up.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// ε in millionths: a decimal with at most six places, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epsilon {
    millionths: u64,
}

const MILLION: u64 = 1_000_000;

impl Epsilon {
    /// Below this a day's package publishes next to nothing (τ grows as C/ε); above it the
    /// guarantee means little (a factor e^10 ≈ 22,000 on any inference).
    pub const MIN: Epsilon = Epsilon {
        millionths: MILLION / 100,
    };
    pub const MAX: Epsilon = Epsilon {
        millionths: 10 * MILLION,
    };

    pub fn as_f64(self) -> f64 {
        self.millionths as f64 / MILLION as f64
    }
}

impl FromStr for Epsilon {
    type Err = String;

    /// A plain decimal: `1`, `0.5`, `1.25` (at most six places).
    fn from_str(s: &str) -> Result<Epsilon, String> {
        let bad = || format!("ε must be a decimal such as 1 or 0.5 (got {s:?})");
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty()
            || (s.contains('.') && frac.is_empty())
            || frac.len() > 6
            || !whole
                .bytes()
                .chain(frac.bytes())
                .all(|b| b.is_ascii_digit())
            || whole.len() > 6
        {
            return Err(bad());
        }
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let frac_millionths: u64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
        let e = Epsilon {
            millionths: whole * MILLION + frac_millionths,
        };
        if !(Epsilon::MIN.millionths..=Epsilon::MAX.millionths).contains(&e.millionths) {
            return Err(format!(
                "ε must be between {} and {} (got {s})",
                Epsilon::MIN,
                Epsilon::MAX
            ));
        }
        Ok(e)
    }
}

impl fmt::Display for Epsilon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.millionths / MILLION, self.millionths % MILLION);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let frac = format!("{frac:06}");
            write!(f, "{whole}.{}", frac.trim_end_matches('0'))
        }
    }
}

/// The default contribution bound C: a commuter's day is two journeys, an errand or a lunch
/// trip makes three or four; beyond four the noise (scale C/ε) and τ grow for the few riders
/// who ride more. The export prints how many journeys the bound left out.
pub const JOURNEYS_PER_RIDER_DEFAULT: i64 = 4;
/// At 32 and ε = 1 the noise's scale is 64 and τ about 1,250: a day would publish next to
/// nothing, so a larger bound is a mistake.
pub const JOURNEYS_PER_RIDER_MAX: i64 = 32;
/// The default δ for the package (split between the tables): the chance, for the worst-placed
/// rider, that cells only they made appear at all. Kept below one over the riders of a day of
/// a large network (10^6–10^7), so that even summed over every rider of the day the expected
/// number of riders it fails is below one.
pub const DELTA_DEFAULT: f64 = 1e-7;
/// Above this δ is no longer small beside one over the riders of even a small network's day.
pub const DELTA_MAX: f64 = 1e-3;
/// Below this a smaller δ only raises τ; it is already far below any other risk of the export.
pub const DELTA_MIN: f64 = 1e-15;

/// What a noisy export is asked for: the package's total (ε, δ) and the bound C, checked
/// ([`Dp::new`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dp {
    epsilon: Epsilon,
    delta: f64,
    journeys_per_rider_max: i64,
}

impl Dp {
    pub fn new(epsilon: Epsilon, delta: f64, journeys_per_rider_max: i64) -> anyhow::Result<Dp> {
        anyhow::ensure!(
            (1..=JOURNEYS_PER_RIDER_MAX).contains(&journeys_per_rider_max),
            "the journeys counted per rider must be between 1 and {JOURNEYS_PER_RIDER_MAX} (got {journeys_per_rider_max})"
        );
        anyhow::ensure!(
            (DELTA_MIN..=DELTA_MAX).contains(&delta),
            "δ must be between {DELTA_MIN:e} and {DELTA_MAX:e} (got {delta:e})"
        );
        Ok(Dp {
            epsilon,
            delta,
            journeys_per_rider_max,
        })
    }

    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// C: journeys counted per rider and day.
    pub fn journeys_per_rider_max(&self) -> i64 {
        self.journeys_per_rider_max
    }

    /// One table's share: half of ε and half of δ (the package has two tables).
    pub fn per_table(&self) -> Table {
        Table::new(
            self.epsilon.millionths,
            2 * MILLION,
            self.journeys_per_rider_max,
            self.delta / 2.0,
        )
    }
}

/// One table's mechanism: ε_t = `epsilon_num / epsilon_den`, bound C, δ_t, and the threshold τ
/// they give.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Table {
    /// The noise is `P[z] ∝ exp(-|z|·s/t)`: s/t = ε_t / C, reduced.
    s: u64,
    t: u64,
    pub epsilon: f64,
    pub delta: f64,
    pub journeys_per_rider_max: i64,
    /// Noisy counts below this are withheld.
    pub tau: i64,
}

impl Table {
    fn new(epsilon_num: u64, epsilon_den: u64, c: i64, delta: f64) -> Table {
        let (s, t) = (epsilon_num, epsilon_den * c as u64);
        let g = gcd(s, t);
        let epsilon = epsilon_num as f64 / epsilon_den as f64;
        Table {
            s: s / g,
            t: t / g,
            epsilon,
            delta,
            journeys_per_rider_max: c,
            tau: threshold(epsilon, c, delta),
        }
    }

    /// The noise's scale, C / ε_t (its standard deviation is about √2 times this).
    pub fn scale(&self) -> f64 {
        self.journeys_per_rider_max as f64 / self.epsilon
    }

    /// One draw of the noise.
    pub fn noise<R: Rng + ?Sized>(&self, rng: &mut R) -> i64 {
        discrete_laplace(rng, self.s, self.t)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Bernoulli(num / den), exactly: a uniform integer below `den` (rand's integer ranges are
/// unbiased) compared with `num`.
fn bernoulli<R: Rng + ?Sized>(rng: &mut R, num: u64, den: u64) -> bool {
    debug_assert!(num <= den && den > 0);
    rng.gen_range(0..den) < num
}

/// Bernoulli(exp(-num/den)) for num ≤ den (CKS 2020, Algorithm 1, γ ≤ 1): the number of
/// successes in a run of Bernoulli(γ/k), k = 1, 2, …, is even with probability exp(-γ).
fn bernoulli_exp_minus_at_most_one<R: Rng + ?Sized>(rng: &mut R, num: u64, den: u64) -> bool {
    let mut k: u64 = 1;
    // den·k overflows only after ~2^38 successes, each of probability at most 1/k.
    while bernoulli(rng, num, den.saturating_mul(k)) {
        k += 1;
    }
    k % 2 == 1
}

/// Bernoulli(exp(-num/den)) for any num/den ≥ 0 (CKS 2020, Algorithm 1): exp(-1) once per
/// whole unit, then the fraction.
fn bernoulli_exp_minus<R: Rng + ?Sized>(rng: &mut R, num: u64, den: u64) -> bool {
    for _ in 0..num / den {
        if !bernoulli_exp_minus_at_most_one(rng, 1, 1) {
            return false;
        }
    }
    bernoulli_exp_minus_at_most_one(rng, num % den, den)
}

/// The two-sided geometric (discrete Laplace) distribution with `P[y] ∝ exp(-|y|·s/t)`,
/// sampled exactly (CKS 2020, Algorithm 2): X = U + t·V is geometric with parameter
/// exp(-1/t) (U uniform below t kept with probability exp(-U/t), V geometric with parameter
/// exp(-1)); ⌊X/s⌋ is then geometric with parameter exp(-s/t); a fair sign, with −0 rejected.
pub fn discrete_laplace<R: Rng + ?Sized>(rng: &mut R, s: u64, t: u64) -> i64 {
    assert!(s >= 1 && t >= 1, "discrete Laplace needs s, t ≥ 1");
    loop {
        let u = rng.gen_range(0..t);
        if !bernoulli_exp_minus(rng, u, t) {
            continue;
        }
        let mut v: u64 = 0;
        while bernoulli_exp_minus(rng, 1, 1) {
            v += 1;
        }
        let y = u.saturating_add(t.saturating_mul(v)) / s;
        let negative: bool = rng.gen();
        if negative && y == 0 {
            continue;
        }
        let y = i64::try_from(y).unwrap_or(i64::MAX);
        return if negative { -y } else { y };
    }
}

/// The two-sided geometric's pmf with `α = exp(-ε_t/C)`: `(1-α)/(1+α)·α^|z|`.
pub fn pmf(alpha: f64, z: i64) -> f64 {
    (1.0 - alpha) / (1.0 + alpha) * alpha.powf(z.unsigned_abs() as f64)
}

/// `P[Z ≥ m] = α^m / (1+α)` for m ≥ 1.
pub fn tail(alpha: f64, m: i64) -> f64 {
    assert!(m >= 1);
    alpha.powf(m as f64) / (1.0 + alpha)
}

/// The δ of releasing only noisy counts ≥ τ (τ > C), for one table with budget ε_t and bound
/// C: the probability that any cell one rider alone made non-empty is released. Those cells'
/// counts c_j are ≥ 1 with Σ c_j ≤ C, and each is released with probability
/// `P[Z ≥ τ − c_j] = α^τ·e^{ε_t·c_j/C} / (1+α)`. `e^{ε_t·c/C}` is convex in c, so the sum
/// is largest either for one cell of C (`e^{ε_t}`) or C cells of 1 (`C·e^{ε_t/C}`); the tests
/// check this against every partition of C.
pub fn delta_at(epsilon: f64, c: i64, tau: i64) -> f64 {
    assert!(tau > c, "τ must exceed C");
    let c_f = c as f64;
    let alpha = (-epsilon / c_f).exp();
    let worst = epsilon.exp().max(c_f * (epsilon / c_f).exp());
    worst * (-epsilon * tau as f64 / c_f).exp() / (1.0 + alpha)
}

/// The smallest τ > C with [`delta_at`] ≤ δ:
/// `τ = ⌈(C/ε_t)·ln(max(e^{ε_t}, C·e^{ε_t/C}) / ((1+α)·δ))⌉`, at least C + 1.
pub fn threshold(epsilon: f64, c: i64, delta: f64) -> i64 {
    let c_f = c as f64;
    let alpha = (-epsilon / c_f).exp();
    let worst = epsilon.exp().max(c_f * (epsilon / c_f).exp());
    let closed = (c_f / epsilon * (worst / ((1.0 + alpha) * delta)).ln()).ceil() as i64;
    let mut tau = closed.max(c + 1);
    // The closed form in floating point may be one off either way: settle it on delta_at,
    // with a hair of margin so rounding never makes δ larger than asked.
    let ok = |tau: i64| delta_at(epsilon, c, tau) <= delta * (1.0 - 1e-9);
    while !ok(tau) {
        tau += 1;
    }
    while tau - 1 > c && ok(tau - 1) {
        tau -= 1;
    }
    tau
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn epsilon_is_an_exact_decimal() {
        let e = |s: &str| s.parse::<Epsilon>();
        assert_eq!(e("1").unwrap().millionths, 1_000_000);
        assert_eq!(e("0.5").unwrap().millionths, 500_000);
        assert_eq!(e("1.000001").unwrap().millionths, 1_000_001);
        assert_eq!(e("0.01").unwrap().to_string(), "0.01");
        assert_eq!(e("2.50").unwrap().to_string(), "2.5");
        assert_eq!(e("10").unwrap().to_string(), "10");
        for bad in [
            "",
            ".5",
            "1.",
            "-1",
            "1e-3",
            "0",
            "0.009",
            "10.000001",
            "0.1234567",
            "nan",
            " 1",
        ] {
            assert!(e(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// Draws `n` samples and checks each value's frequency against the pmf, within 5 standard
    /// errors (plus a floor for rare values), and the variance against 2α/(1−α)².
    fn check_sampler(s: u64, t: u64, n: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let alpha = (-(s as f64) / t as f64).exp();
        let mut freq = std::collections::HashMap::<i64, usize>::new();
        let (mut sum, mut sum_sq) = (0.0, 0.0);
        for _ in 0..n {
            let z = discrete_laplace(&mut rng, s, t);
            *freq.entry(z).or_default() += 1;
            sum += z as f64;
            sum_sq += (z as f64).powi(2);
        }
        let nf = n as f64;
        for z in -30..=30 {
            let p = pmf(alpha, z);
            let got = *freq.get(&z).unwrap_or(&0) as f64 / nf;
            let se = (p * (1.0 - p) / nf).sqrt();
            assert!(
                (got - p).abs() <= 5.0 * se + 1.0 / nf,
                "s/t={s}/{t} z={z}: {got} vs {p}"
            );
        }
        let var = 2.0 * alpha / (1.0 - alpha).powi(2);
        let mean = sum / nf;
        assert!(mean.abs() < 5.0 * (var / nf).sqrt(), "mean {mean}");
        let got_var = sum_sq / nf - mean * mean;
        assert!(
            (got_var - var).abs() < 0.05 * var,
            "variance {got_var} vs {var}"
        );
        // A chi-square over the values with expected count ≥ 5, the rest pooled.
        let (mut chi, mut cells, mut rest_expected, mut rest_got) = (0.0, 0, 0.0, 0usize);
        for z in -200..=200 {
            let expected = pmf(alpha, z) * nf;
            let got = *freq.get(&z).unwrap_or(&0);
            if expected >= 5.0 {
                chi += (got as f64 - expected).powi(2) / expected;
                cells += 1;
            } else {
                rest_expected += expected;
                rest_got += got;
            }
        }
        rest_got += freq
            .iter()
            .filter(|(z, _)| z.abs() > 200)
            .map(|(_, n)| n)
            .sum::<usize>();
        rest_expected += nf * 2.0 * tail(alpha, 201);
        if rest_expected >= 5.0 {
            chi += (rest_got as f64 - rest_expected).powi(2) / rest_expected;
            cells += 1;
        }
        // 99.99 % quantile of χ² with df degrees of freedom, Wilson–Hilferty.
        let df = (cells - 1) as f64;
        let q = df * (1.0 - 2.0 / (9.0 * df) + 3.719 * (2.0 / (9.0 * df)).sqrt()).powi(3);
        assert!(
            chi < q,
            "s/t={s}/{t}: χ² {chi:.1} over {df} df (limit {q:.1})"
        );
    }

    #[test]
    fn the_sampler_draws_the_geometric_pmf() {
        // Scale 1 (ε_t = C), 2, 8 (ε = 1, C = 4: the default bound at a total ε of 1), and a
        // scale with an awkward rational (ε = 0.333333 → s/t = 333333 / 8000000).
        check_sampler(1, 1, 200_000, 1);
        check_sampler(1, 2, 200_000, 2);
        check_sampler(1, 8, 200_000, 3);
        let t = Dp::new("0.333333".parse().unwrap(), DELTA_DEFAULT, 4)
            .unwrap()
            .per_table();
        assert_eq!((t.s, t.t), (333_333, 8_000_000));
        check_sampler(t.s, t.t, 100_000, 4);
    }

    #[test]
    fn exp_minus_bernoulli_is_exact() {
        // Bernoulli(exp(-γ)) for γ below, at and above 1, within 5 standard errors.
        let mut rng = StdRng::seed_from_u64(7);
        for (num, den) in [(0, 1), (1, 3), (1, 1), (5, 2), (7, 3)] {
            let n = 100_000;
            let hits = (0..n)
                .filter(|_| bernoulli_exp_minus(&mut rng, num, den))
                .count();
            let p = (-(num as f64) / den as f64).exp();
            let se = (p * (1.0 - p) / n as f64).sqrt();
            let got = hits as f64 / n as f64;
            assert!(
                (got - p).abs() <= 5.0 * se + 1e-9,
                "γ={num}/{den}: {got} vs {p}"
            );
        }
    }

    /// Every way to split `c` journeys into non-empty cells (parts ≥ 1, total ≤ c): the
    /// exact δ is the largest Σ P[Z ≥ τ − c_j] over them.
    fn worst_delta_by_enumeration(epsilon: f64, c: i64, tau: i64) -> f64 {
        fn parts(left: i64, max_part: i64, acc: &mut Vec<i64>, out: &mut Vec<Vec<i64>>) {
            if !acc.is_empty() {
                out.push(acc.clone());
            }
            for p in (1..=max_part.min(left)).rev() {
                acc.push(p);
                parts(left - p, p, acc, out);
                acc.pop();
            }
        }
        let mut all = Vec::new();
        parts(c, c, &mut Vec::new(), &mut all);
        let alpha = (-epsilon / c as f64).exp();
        all.iter()
            .map(|p| p.iter().map(|&cj| tail(alpha, tau - cj)).sum::<f64>())
            .fold(0.0, f64::max)
    }

    #[test]
    fn the_threshold_holds_delta_and_is_the_smallest() {
        for c in 1..=8 {
            for epsilon in [0.05, 0.25, 0.5, 1.0, 2.0, 4.0] {
                for delta in [1e-3, 1e-6, 5e-8, 1e-10] {
                    let tau = threshold(epsilon, c, delta);
                    assert!(tau > c);
                    let exact = worst_delta_by_enumeration(epsilon, c, tau);
                    let formula = delta_at(epsilon, c, tau);
                    assert!(
                        (exact - formula).abs() <= 1e-9 * formula,
                        "c={c} ε={epsilon}: the worst partition is an end ({exact} vs {formula})"
                    );
                    assert!(exact <= delta, "c={c} ε={epsilon} δ={delta}: τ={tau}");
                    if tau - 1 > c {
                        assert!(
                            worst_delta_by_enumeration(epsilon, c, tau - 1) > delta * (1.0 - 1e-6),
                            "c={c} ε={epsilon} δ={delta}: τ={tau} is not the smallest"
                        );
                    }
                }
            }
        }
        // The figures docs/open-data.md quotes.
        let per_table = |e: &str, c: i64| {
            Dp::new(e.parse().unwrap(), DELTA_DEFAULT, c)
                .unwrap()
                .per_table()
                .tau
        };
        assert_eq!(per_table("1", 4), 142);
        assert_eq!(per_table("2", 4), 72);
        assert_eq!(per_table("4", 4), 37);
        assert_eq!(per_table("8", 4), 21);
        assert_eq!(per_table("1", 2), 69);
        assert_eq!(per_table("1", 8), 293);
    }

    #[test]
    fn a_lone_riders_cells_appear_as_often_as_delta_says() {
        // The δ argument with the sampler itself, at a threshold low enough to see it happen:
        // ε_t = 0.5, C = 4, τ = 12. A rider alone in one cell of 4 journeys, or in 4 cells of 1,
        // makes a published cell with the frequency the tail gives (one cell: exactly; four:
        // at most the union bound, which is what δ_t adds up), and the worst of the two is
        // `delta_at`.
        let (epsilon, c, tau) = (0.5, 4i64, 12i64);
        let t = Table::new(500_000, MILLION, c, 1e-3);
        let alpha = (-epsilon / c as f64).exp();
        let mut rng = StdRng::seed_from_u64(11);
        let n = 200_000;
        let one_cell = (0..n).filter(|_| c + t.noise(&mut rng) >= tau).count() as f64 / n as f64;
        let four_cells = (0..n)
            .filter(|_| (0..c).any(|_| 1 + t.noise(&mut rng) >= tau))
            .count() as f64
            / n as f64;
        let p_one = tail(alpha, tau - c);
        let p_four = 1.0 - (1.0 - tail(alpha, tau - 1)).powi(c as i32);
        let se = |p: f64| (p * (1.0 - p) / n as f64).sqrt();
        assert!(
            (one_cell - p_one).abs() <= 5.0 * se(p_one),
            "{one_cell} vs {p_one}"
        );
        assert!(
            (four_cells - p_four).abs() <= 5.0 * se(p_four),
            "{four_cells} vs {p_four}"
        );
        let bound = delta_at(epsilon, c, tau);
        assert!(p_one <= bound && 4.0 * tail(alpha, tau - 1) <= bound * (1.0 + 1e-12));
        assert!(one_cell.max(four_cells) <= bound + 5.0 * se(bound));
    }

    #[test]
    fn the_tail_is_the_pmf_summed() {
        let alpha = (-0.3f64).exp();
        for m in 1..10 {
            let summed: f64 = (m..2_000).map(|z| pmf(alpha, z)).sum();
            assert!((summed - tail(alpha, m)).abs() < 1e-12);
        }
        let total: f64 = (-2_000..2_000).map(|z| pmf(alpha, z)).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn the_budget_splits_exactly(millionths in 10_000u64..=10_000_000, c in 1i64..=32) {
            let e = Epsilon { millionths };
            let dp = Dp::new(e, DELTA_DEFAULT, c).unwrap();
            let t = dp.per_table();
            // s/t = (ε/2)/C exactly.
            prop_assert_eq!(
                u128::from(t.s) * 2 * u128::from(MILLION) * c as u128,
                u128::from(t.t) * u128::from(millionths)
            );
            prop_assert!(t.tau > c);
            prop_assert!(delta_at(t.epsilon, c, t.tau) <= DELTA_DEFAULT / 2.0);
            prop_assert_eq!(e.to_string().parse::<Epsilon>().unwrap(), e);
        }
    }
}
