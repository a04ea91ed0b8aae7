//! Amounts as the open API writes them: yuan as a decimal string with at most two places
//! ("12.50", "12.5", "12"), held as integer fen by both ends. No signs, exponents, spaces or
//! floats; what a side allows beyond the grammar (zero, a ceiling) is its own rule.

/// Why a text is not an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not digits with at most one inner `.`.
    NotANumber,
    TooManyDecimals,
    /// More fen than an `i64` holds.
    OutOfRange,
}

/// "12.50" / "12.5" / "12" → 1250 fen.
pub fn parse_yuan(text: &str) -> Result<i64, AmountError> {
    let (whole, frac) = match text.split_once('.') {
        Some((_, "")) => return Err(AmountError::NotANumber),
        Some(parts) => parts,
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) {
        return Err(AmountError::NotANumber);
    }
    if frac.len() > 2 {
        return Err(AmountError::TooManyDecimals);
    }
    // Only digits from here: a failed parse is an overflow.
    let whole: i64 = whole.parse().map_err(|_| AmountError::OutOfRange)?;
    let frac: i64 = format!("{frac:0<2}")
        .parse()
        .map_err(|_| AmountError::NotANumber)?;
    whole
        .checked_mul(100)
        .and_then(|fen| fen.checked_add(frac))
        .ok_or(AmountError::OutOfRange)
}

/// Fen as the API's yuan string, always two places: 1250 → "12.50", 5 → "0.05".
pub fn format_yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    format!("{sign}{}.{:02}", fen / 100, fen % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves yuan strings and fen round-trip, and that what the grammar refuses is refused
    /// with its reason.
    #[test]
    fn yuan_strings() {
        for (fen, text) in [(0, "0.00"), (5, "0.05"), (1250, "12.50"), (100, "1.00")] {
            assert_eq!(format_yuan(fen), text);
            assert_eq!(parse_yuan(text), Ok(fen));
        }
        assert_eq!(format_yuan(-1250), "-12.50");
        assert_eq!(parse_yuan("12.5"), Ok(1250));
        assert_eq!(parse_yuan("12"), Ok(1200));
        for bad in [
            "", ".5", "12.", "-1.00", "+1", "1e3", "1,00", " 1", "1.2.3", "abc", ".",
        ] {
            assert_eq!(parse_yuan(bad), Err(AmountError::NotANumber), "{bad}");
        }
        assert_eq!(parse_yuan("1.234"), Err(AmountError::TooManyDecimals));
        assert_eq!(
            parse_yuan("99999999999999999999"),
            Err(AmountError::OutOfRange)
        );
        assert_eq!(
            parse_yuan("92233720368547758.07"),
            Ok(i64::MAX),
            "the largest amount"
        );
        assert_eq!(
            parse_yuan("92233720368547758.08"),
            Err(AmountError::OutOfRange)
        );
    }
}
