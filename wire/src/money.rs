//! Exact money: an amount in an ISO 4217 currency, held as a whole number of minor units.
//!
//! Every amount a rider is charged, a provider settles or an operator is paid passes through
//! [`Money`], so the rules live here once:
//! - an amount never has more decimal places than its currency's minor unit ("3.001 CNY" is an
//!   error, not a silent rounding);
//! - arithmetic is checked: mixing currencies or overflowing is an error, never a panic or a wrap;
//! - computed values (km × rate, percentages) are rounded explicitly with a named [`Rounding`];
//! - on the wire an amount is a JSON *string* with exactly the currency's minor digits
//!   (`{"amount":"3.00","currency":"CNY"}`), because JSON numbers are floats to most parsers.
//!
//! It deliberately does not do: floats (not even for display), currency conversion, allocation
//! or splitting of amounts, or locale-specific formatting. The amount is stored as an `i64` count of
//! minor units, so the representable range is ±9.2 × 10^16 yuan — far beyond any fare — and
//! [`Money::to_minor`] is exact and infallible.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{self, Deserializer};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

/// Errors from constructing, parsing or combining [`Money`] and [`Currency`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The currency code is not one Turnpike knows.
    #[error("unknown currency code {0:?} (supported: {supported})", supported = SUPPORTED_CODES)]
    UnknownCurrency(String),
    /// The amount has more decimal places than the currency's minor unit allows.
    #[error(
        "bad precision: {amount} has more than {minor_units} decimal place(s), the minor unit of {currency}"
    )]
    BadPrecision {
        /// The offending amount, as given.
        amount: Decimal,
        /// The currency it was meant for.
        currency: Currency,
        /// How many decimal places that currency allows.
        minor_units: u32,
    },
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: cannot combine {left} with {right}")]
    CurrencyMismatch {
        /// Currency of the left-hand operand.
        left: Currency,
        /// Currency of the right-hand operand.
        right: Currency,
    },
    /// The amount does not fit in an `i64` count of the currency's minor units.
    #[error("amount {amount} {currency} is out of range (more than i64::MAX minor units)")]
    OutOfRange {
        /// The amount that did not fit.
        amount: Decimal,
        /// Its currency.
        currency: Currency,
    },
    /// Checked arithmetic overflowed.
    #[error("overflow in money {operation} ({currency})")]
    Overflow {
        /// Which operation overflowed, e.g. "addition".
        operation: &'static str,
        /// Currency of the operands.
        currency: Currency,
    },
    /// A decimal amount string was not of the form `-?DIGITS(.DIGITS)?`.
    #[error("bad amount {0:?}: expected digits with an optional '.' and fraction, like \"3.00\"")]
    BadAmountSyntax(String),
    /// The unit passed to [`Money::round_to_unit`] is not positive or is finer than the minor unit.
    #[error(
        "bad rounding unit {unit}: must be positive and a whole number of {currency} minor units"
    )]
    BadRoundingUnit {
        /// The unit given.
        unit: Decimal,
        /// The currency it was meant for.
        currency: Currency,
    },
}

const SUPPORTED_CODES: &str = "CNY, HKD, MOP, TWD, USD, EUR, GBP, SGD, JPY, KRW";

/// An ISO 4217 currency with its minor-unit exponent (2 for CNY: 1 yuan = 100 fen; 0 for JPY).
///
/// Only a fixed list is supported, so a typo in a config file is an error rather than a new
/// currency. Serializes as the 3-letter code string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_units: u32,
}

impl Currency {
    /// Chinese yuan renminbi, 2 minor digits (fen).
    pub const CNY: Currency = Currency::new_const("CNY", 2);
    /// Hong Kong dollar, 2 minor digits.
    pub const HKD: Currency = Currency::new_const("HKD", 2);
    /// Macanese pataca, 2 minor digits.
    pub const MOP: Currency = Currency::new_const("MOP", 2);
    /// New Taiwan dollar, 2 minor digits (ISO 4217, although cash uses whole dollars).
    pub const TWD: Currency = Currency::new_const("TWD", 2);
    /// US dollar, 2 minor digits.
    pub const USD: Currency = Currency::new_const("USD", 2);
    /// Euro, 2 minor digits.
    pub const EUR: Currency = Currency::new_const("EUR", 2);
    /// Pound sterling, 2 minor digits.
    pub const GBP: Currency = Currency::new_const("GBP", 2);
    /// Singapore dollar, 2 minor digits.
    pub const SGD: Currency = Currency::new_const("SGD", 2);
    /// Japanese yen, no minor unit.
    pub const JPY: Currency = Currency::new_const("JPY", 0);
    /// South Korean won, no minor unit.
    pub const KRW: Currency = Currency::new_const("KRW", 0);

    /// Every supported currency.
    pub const ALL: &'static [Currency] = &[
        Currency::CNY,
        Currency::HKD,
        Currency::MOP,
        Currency::TWD,
        Currency::USD,
        Currency::EUR,
        Currency::GBP,
        Currency::SGD,
        Currency::JPY,
        Currency::KRW,
    ];

    const fn new_const(code: &'static str, minor_units: u32) -> Currency {
        Currency { code, minor_units }
    }

    /// Looks up a currency by its upper-case ISO 4217 code, e.g. `"CNY"`.
    ///
    /// Lower case is rejected on purpose: codes on the wire are canonical, and accepting variants
    /// would make two spellings of one currency compare unequal as strings elsewhere.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        Currency::ALL
            .iter()
            .copied()
            .find(|c| c.code == code)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))
    }

    /// The 3-letter ISO 4217 code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The minor-unit exponent: the number of decimal places an amount may have.
    pub fn minor_units(&self) -> u32 {
        self.minor_units
    }

    /// The smallest representable amount as a decimal (0.01 for CNY, 1 for JPY).
    fn minor_unit_decimal(&self) -> Decimal {
        Decimal::new(1, self.minor_units)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code)
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;
        impl de::Visitor<'_> for CodeVisitor {
            type Value = Currency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 4217 currency code string such as \"CNY\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Currency, E> {
                Currency::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(CodeVisitor)
    }
}

/// How a computed value is rounded to a representable amount.
///
/// All modes are symmetric around zero, so a refund (negative) rounds like the charge it undoes.
///
/// | value  | `HalfUp` | `HalfEven` | `Up`  | `Down` |
/// | ------ | -------- | ---------- | ----- | ------ |
/// | 2.345  | 2.35     | 2.34       | 2.35  | 2.34   |
/// | 2.355  | 2.36     | 2.36       | 2.36  | 2.35   |
/// | 2.341  | 2.34     | 2.34       | 2.35  | 2.34   |
/// | -2.345 | -2.35    | -2.34      | -2.35 | -2.34  |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// To the nearest; ties away from zero ("commercial" rounding, `MidpointAwayFromZero`).
    HalfUp,
    /// To the nearest; ties to the even neighbour (banker's rounding), which does not drift
    /// upwards when many rounded values are summed.
    HalfEven,
    /// Away from zero: any remainder rounds to the next unit further from zero (a "ceiling" for
    /// positive amounts).
    Up,
    /// Toward zero: the remainder is dropped (truncation; a "floor" for positive amounts).
    Down,
}

impl Rounding {
    fn strategy(self) -> RoundingStrategy {
        match self {
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::Up => RoundingStrategy::AwayFromZero,
            Rounding::Down => RoundingStrategy::ToZero,
        }
    }
}

/// An exact amount in a [`Currency`], never with more decimal places than the currency allows.
///
/// Held as a count of minor units (fen for CNY), so equality is exact: `3.0 CNY == 3.00 CNY`.
/// There is deliberately no `Ord`: comparing amounts in different currencies is meaningless; use
/// [`Money::min`] (which checks) or compare [`Money::to_minor`] after checking currencies.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// Creates an amount, rejecting more decimal places than the currency's minor unit
    /// ([`MoneyError::BadPrecision`]) and amounts beyond `i64` minor units.
    ///
    /// Trailing zeros do not count: `3.000` is a valid CNY amount (it is 3.00).
    pub fn new(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        let normalized = amount.normalize();
        if normalized.scale() > currency.minor_units {
            return Err(MoneyError::BadPrecision {
                amount,
                currency,
                minor_units: currency.minor_units,
            });
        }
        // mantissa × 10^(minor − scale) is the exact count of minor units; i128 cannot overflow
        // for the first step (|mantissa| < 2^96) but the multiplication can, hence checked.
        let out_of_range = || MoneyError::OutOfRange { amount, currency };
        let factor = 10i128
            .checked_pow(currency.minor_units - normalized.scale())
            .ok_or_else(out_of_range)?;
        let minor = normalized
            .mantissa()
            .checked_mul(factor)
            .ok_or_else(out_of_range)?;
        let minor = i64::try_from(minor).map_err(|_| out_of_range())?;
        Ok(Money { minor, currency })
    }

    /// Parses a decimal amount string such as `"3.00"` or `"-12"` (strictly
    /// `-?[0-9]+(\.[0-9]+)?`: no exponent, sign `+`, spaces or digit separators) and validates
    /// its precision like [`Money::new`].
    pub fn parse_amount(amount: &str, currency: Currency) -> Result<Money, MoneyError> {
        if !is_plain_decimal(amount) {
            return Err(MoneyError::BadAmountSyntax(amount.to_owned()));
        }
        // The syntax check above means only an over-long number can fail here; rust_decimal's
        // parser would otherwise silently round excess digits, which is why it is not trusted with
        // unchecked input.
        let significant_digits = amount.bytes().filter(u8::is_ascii_digit).count();
        if significant_digits > 28 {
            return Err(MoneyError::BadAmountSyntax(amount.to_owned()));
        }
        let value: Decimal = amount
            .parse()
            .map_err(|_| MoneyError::BadAmountSyntax(amount.to_owned()))?;
        Money::new(value, currency)
    }

    /// Creates an amount from a count of minor units: `from_minor(300, CNY)` is 3.00 CNY.
    pub fn from_minor(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    /// The exact count of minor units (300 for 3.00 CNY).
    pub fn to_minor(&self) -> i64 {
        self.minor
    }

    /// Zero in the given currency.
    pub fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }

    /// The amount as a decimal with exactly the currency's minor digits (scale).
    pub fn amount(&self) -> Decimal {
        // The scale is at most 2 for every supported currency, far below rust_decimal's 28, so
        // this cannot fail; the fallback keeps the function total without a panic path.
        Decimal::try_new(self.minor, self.currency.minor_units).unwrap_or(Decimal::ZERO)
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// True if the amount is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.minor == 0
    }

    /// True if the amount is below zero (a refund or credit).
    pub fn is_negative(&self) -> bool {
        self.minor < 0
    }

    /// True if the amount is above zero.
    pub fn is_positive(&self) -> bool {
        self.minor > 0
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }

    /// `self + other`; errors on different currencies or overflow.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::Overflow {
                operation: "addition",
                currency: self.currency,
            })?;
        Ok(Money::from_minor(minor, self.currency))
    }

    /// `self − other`; errors on different currencies or overflow.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self
            .minor
            .checked_sub(other.minor)
            .ok_or(MoneyError::Overflow {
                operation: "subtraction",
                currency: self.currency,
            })?;
        Ok(Money::from_minor(minor, self.currency))
    }

    /// `−self`; errors only for the most negative amount.
    pub fn checked_neg(&self) -> Result<Money, MoneyError> {
        let minor = self.minor.checked_neg().ok_or(MoneyError::Overflow {
            operation: "negation",
            currency: self.currency,
        })?;
        Ok(Money::from_minor(minor, self.currency))
    }

    /// The smaller of two amounts (e.g. a fare capped at a daily maximum); errors on different
    /// currencies.
    pub fn min(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(if other.minor < self.minor {
            *other
        } else {
            *self
        })
    }

    /// The larger of two amounts; errors on different currencies.
    pub fn max(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(if other.minor > self.minor {
            *other
        } else {
            *self
        })
    }

    /// Rounds a computed value (km × rate, a percentage) to the currency's minor unit.
    ///
    /// Errors only if the rounded value is beyond `i64` minor units.
    pub fn round_to_minor(
        value: Decimal,
        currency: Currency,
        rounding: Rounding,
    ) -> Result<Money, MoneyError> {
        let rounded = value.round_dp_with_strategy(currency.minor_units, rounding.strategy());
        Money::new(rounded, currency)
    }

    /// Rounds a computed value to a multiple of a coarser `unit`, e.g. whole yuan (`unit = 1`) or
    /// half yuan (`unit = 0.5`), as many fare tables do.
    ///
    /// `unit` must be positive and a whole number of minor units, so the result is always a valid
    /// amount. The value is divided by the unit, rounded to an integer and multiplied back; the
    /// division is exact whenever the quotient has at most 28 significant digits, which covers
    /// any fare computation.
    pub fn round_to_unit(
        value: Decimal,
        unit: Decimal,
        currency: Currency,
        rounding: Rounding,
    ) -> Result<Money, MoneyError> {
        let bad_unit = || MoneyError::BadRoundingUnit { unit, currency };
        if unit <= Decimal::ZERO || unit.normalize().scale() > currency.minor_units {
            return Err(bad_unit());
        }
        let overflow = || MoneyError::Overflow {
            operation: "rounding",
            currency,
        };
        let units = value
            .checked_div(unit)
            .ok_or_else(overflow)?
            .round_dp_with_strategy(0, rounding.strategy());
        let rounded = units.checked_mul(unit).ok_or_else(overflow)?;
        Money::new(rounded, currency)
    }

    /// The smallest representable positive amount of the currency (0.01 CNY, 1 JPY).
    pub fn minor_unit(currency: Currency) -> Money {
        Money::from_minor(1, currency)
    }

    /// The minor unit as a decimal, for callers building rounding units.
    pub fn minor_unit_decimal(currency: Currency) -> Decimal {
        currency.minor_unit_decimal()
    }
}

/// True for `-?[0-9]+(\.[0-9]+)?`.
fn is_plain_decimal(s: &str) -> bool {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    all_digits(int_part) && frac_part.is_none_or(all_digits)
}

impl fmt::Display for Money {
    /// `"3.00 CNY"`: always exactly the currency's minor digits, then the code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount(), self.currency.code)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

impl Serialize for Money {
    /// `{"amount":"3.00","currency":"CNY"}`: the amount is a string with exactly the minor digits.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Money", 2)?;
        s.serialize_field("amount", &self.amount().to_string())?;
        s.serialize_field("currency", &self.currency)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for Money {
    /// Accepts only `{"amount": "<decimal string>", "currency": "<code>"}`; a JSON number for the
    /// amount is rejected (it would have gone through a float in most producers), as are unknown
    /// fields and amounts with more decimal places than the currency allows. Fewer places are
    /// fine (`"3"` is 3.00 CNY).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            amount: String,
            currency: Currency,
        }
        let raw = Raw::deserialize(deserializer)?;
        Money::parse_amount(&raw.amount, raw.currency).map_err(de::Error::custom)
    }
}
