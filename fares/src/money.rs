//! The few places where this crate touches `turnpike_wire::money`, gathered so that every
//! conversion has one spelling and a change in the wire crate is a change here only.

use rust_decimal::Decimal;
use turnpike_wire::money::{Currency, Money, MoneyError, Rounding};

pub(crate) fn parse_currency(text: &str) -> Option<Currency> {
    Currency::parse(text).ok()
}

/// The ISO 4217 code, for messages.
pub(crate) fn code(currency: Currency) -> String {
    currency.code().to_string()
}

/// One minor unit in major units (0.01 for CNY).
pub(crate) fn minor_unit(currency: Currency) -> Decimal {
    Money::minor_unit_decimal(currency)
}

/// Renminbi, the currency of every demo table.
pub(crate) fn cny() -> Currency {
    Currency::CNY
}

/// Why a decimal is not an amount of its currency.
pub(crate) enum NotAnAmount {
    /// More decimal places than the currency's minor unit.
    Precision,
    /// Beyond what [`Money`] holds (`i64` minor units, about ±9.2 × 10^16 yuan).
    Range,
}

/// `value` as an amount of `currency`.
pub(crate) fn exact(value: Decimal, currency: Currency) -> Result<Money, NotAnAmount> {
    Money::new(value, currency).map_err(|e| match e {
        MoneyError::BadPrecision { .. } => NotAnAmount::Precision,
        _ => NotAnAmount::Range,
    })
}

/// `value` rounded to a multiple of `unit` (in major units: 0.01 for fen, 1 for whole yuan).
pub(crate) fn round_to_unit(
    value: Decimal,
    unit: Decimal,
    currency: Currency,
    rounding: Rounding,
) -> Option<Money> {
    Money::round_to_unit(value, unit, currency, rounding).ok()
}
