//! Amounts as the open API writes them: yuan as decimal strings with at most two places
//! ("12.50"), held as integer fen everywhere else. The grammar is shared with the gateway
//! (`turnpike_provider_wire::amount`); the platform's limits are here.

use turnpike_provider_wire::amount::{self, AmountError};

/// The platform's per-trade ceiling: 100,000,000.00 yuan.
pub const AMOUNT_FEN_MAX: i64 = 10_000_000_000;

/// Parses "12.50" / "12.5" / "12" into fen. Refuses signs, exponents, spaces, more than two
/// decimal places, zero and amounts above [`AMOUNT_FEN_MAX`]; the reason is for `sub_msg`.
pub fn parse_fen(text: &str) -> Result<i64, String> {
    let fen = if text.len() > 16 {
        Err(AmountError::NotANumber)
    } else {
        amount::parse_yuan(text)
    }
    .map_err(|e| match e {
        AmountError::NotANumber => format!("amount {text:?} is not a decimal number of yuan"),
        AmountError::TooManyDecimals => format!("amount {text:?} has more than two decimal places"),
        AmountError::OutOfRange => format!("amount {text:?} is out of range"),
    })?;
    if fen <= 0 || fen > AMOUNT_FEN_MAX {
        return Err(format!(
            "amount {text:?} must be between 0.01 and 100000000.00"
        ));
    }
    Ok(fen)
}

/// Formats fen as the API does: always two places ("12.50", "0.05").
pub use turnpike_provider_wire::amount::format_yuan as format_fen;

/// Like [`parse_fen`] but allows zero: for wallet balances set through the admin API.
pub fn parse_balance_fen(text: &str) -> Result<i64, String> {
    if matches!(text, "0" | "0.0" | "0.00") {
        return Ok(0);
    }
    parse_fen(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves amounts parse exactly and malformed ones are refused.
    #[test]
    fn parse_and_format() {
        for (text, fen) in [("12.50", 1250), ("12.5", 1250), ("12", 1200), ("0.01", 1)] {
            assert_eq!(parse_fen(text), Ok(fen), "{text}");
        }
        for text in [
            "", "0", "0.00", "-1", "+1", "1.234", "1e3", " 1", "1.", ".5", "1.2.3",
        ] {
            assert!(parse_fen(text).is_err(), "{text}");
        }
        assert!(parse_fen("100000000.00").is_ok());
        assert!(parse_fen("100000000.01").is_err());
        assert_eq!(format_fen(1250), "12.50");
        assert_eq!(format_fen(5), "0.05");
        assert_eq!(format_fen(1200), "12.00");
        assert_eq!(parse_balance_fen("0.00"), Ok(0));
        assert!(parse_balance_fen(".").is_err());
    }
}
