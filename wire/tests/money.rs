//! Money: exact amounts, precision, currency mismatch, rounding tables and the JSON form.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use turnpike_wire::money::{Currency, Money, MoneyError, Rounding};

#[test]
fn currency_parse_and_codes() {
    // Known codes parse with their exponent; unknown or lower-case codes are errors.
    assert_eq!(Currency::parse("CNY").unwrap().minor_units(), 2);
    assert_eq!(Currency::parse("JPY").unwrap().minor_units(), 0);
    for c in Currency::ALL {
        assert_eq!(Currency::parse(c.code()).unwrap(), *c);
    }
    assert!(matches!(
        Currency::parse("cny"),
        Err(MoneyError::UnknownCurrency(_))
    ));
    assert!(Currency::parse("XXX").is_err());
    assert!(Currency::parse("").is_err());
}

#[test]
fn new_rejects_bad_precision() {
    // More decimal places than the minor unit is an error; trailing zeros are not.
    assert!(Money::new(dec!(3.00), Currency::CNY).is_ok());
    assert_eq!(
        Money::new(dec!(3.000), Currency::CNY).unwrap().to_minor(),
        300
    );
    let err = Money::new(dec!(3.001), Currency::CNY).unwrap_err();
    assert!(matches!(err, MoneyError::BadPrecision { .. }));
    assert!(err.to_string().starts_with("bad precision"), "{err}");
    assert!(Money::new(dec!(3.5), Currency::JPY).is_err());
    assert_eq!(
        Money::new(dec!(300), Currency::JPY).unwrap().to_minor(),
        300
    );
}

#[test]
fn new_rejects_out_of_range() {
    // Amounts beyond i64 minor units are an error rather than a wrap.
    let too_big = Decimal::from(i64::MAX);
    assert!(matches!(
        Money::new(too_big, Currency::CNY),
        Err(MoneyError::OutOfRange { .. })
    ));
    assert!(Money::new(too_big, Currency::JPY).is_ok());
    assert!(Money::new(Decimal::MAX, Currency::JPY).is_err());
}

#[test]
fn minor_units_round_trip() {
    // from_minor/to_minor and amount() agree exactly.
    let m = Money::from_minor(-1234, Currency::CNY);
    assert_eq!(m.amount(), dec!(-12.34));
    assert_eq!(m.amount().scale(), 2);
    assert_eq!(Money::new(m.amount(), Currency::CNY).unwrap(), m);
    assert_eq!(Money::from_minor(5, Currency::JPY).amount(), dec!(5));
}

#[test]
fn display_has_minor_digits() {
    // Display always shows the currency's minor digits.
    assert_eq!(
        Money::new(dec!(3), Currency::CNY).unwrap().to_string(),
        "3.00 CNY"
    );
    assert_eq!(
        Money::from_minor(-5, Currency::CNY).to_string(),
        "-0.05 CNY"
    );
    assert_eq!(Money::from_minor(300, Currency::JPY).to_string(), "300 JPY");
    assert_eq!(Money::zero(Currency::USD).to_string(), "0.00 USD");
    assert_eq!(
        Money::new(dec!(-0.00), Currency::CNY).unwrap().to_string(),
        "0.00 CNY"
    );
}

#[test]
fn arithmetic_checks_currency_and_overflow() {
    // Same-currency arithmetic works; mixing currencies or overflowing is an error.
    let a = Money::from_minor(300, Currency::CNY);
    let b = Money::from_minor(150, Currency::CNY);
    assert_eq!(a.checked_add(&b).unwrap().to_minor(), 450);
    assert_eq!(b.checked_sub(&a).unwrap().to_minor(), -150);
    assert!(b.checked_sub(&a).unwrap().is_negative());
    assert_eq!(a.min(&b).unwrap(), b);
    assert_eq!(a.max(&b).unwrap(), a);
    let usd = Money::from_minor(300, Currency::USD);
    assert_eq!(
        a.checked_add(&usd),
        Err(MoneyError::CurrencyMismatch {
            left: Currency::CNY,
            right: Currency::USD
        })
    );
    assert!(matches!(
        a.checked_sub(&usd),
        Err(MoneyError::CurrencyMismatch { .. })
    ));
    assert!(a.min(&usd).is_err());
    let max = Money::from_minor(i64::MAX, Currency::CNY);
    assert!(matches!(
        max.checked_add(&b),
        Err(MoneyError::Overflow { .. })
    ));
    let min = Money::from_minor(i64::MIN, Currency::CNY);
    assert!(min.checked_sub(&b).is_err());
    assert!(min.checked_neg().is_err());
    assert!(Money::zero(Currency::CNY).is_zero());
}

#[test]
fn round_to_minor_table() {
    // Each rounding mode gives the documented result, symmetric around zero.
    use Rounding::*;
    let table: &[(Decimal, Rounding, Decimal)] = &[
        (dec!(2.345), HalfUp, dec!(2.35)),
        (dec!(2.345), HalfEven, dec!(2.34)),
        (dec!(2.345), Up, dec!(2.35)),
        (dec!(2.345), Down, dec!(2.34)),
        (dec!(2.355), HalfUp, dec!(2.36)),
        (dec!(2.355), HalfEven, dec!(2.36)),
        (dec!(2.355), Up, dec!(2.36)),
        (dec!(2.355), Down, dec!(2.35)),
        (dec!(2.341), HalfUp, dec!(2.34)),
        (dec!(2.341), HalfEven, dec!(2.34)),
        (dec!(2.341), Up, dec!(2.35)),
        (dec!(2.341), Down, dec!(2.34)),
        (dec!(2.349), HalfUp, dec!(2.35)),
        (dec!(2.349), HalfEven, dec!(2.35)),
        (dec!(2.349), Up, dec!(2.35)),
        (dec!(2.349), Down, dec!(2.34)),
        (dec!(-2.345), HalfUp, dec!(-2.35)),
        (dec!(-2.345), HalfEven, dec!(-2.34)),
        (dec!(-2.345), Up, dec!(-2.35)),
        (dec!(-2.345), Down, dec!(-2.34)),
        (dec!(2.34), Up, dec!(2.34)),
        (dec!(2.34), Down, dec!(2.34)),
        // 12.3 km × 0.45 CNY/km = 5.535
        (dec!(12.3) * dec!(0.45), HalfUp, dec!(5.54)),
        (dec!(12.3) * dec!(0.45), HalfEven, dec!(5.54)),
        (dec!(12.3) * dec!(0.45), Down, dec!(5.53)),
    ];
    for (value, mode, expected) in table {
        let got = Money::round_to_minor(*value, Currency::CNY, *mode).unwrap();
        assert_eq!(got.amount(), *expected, "{value} {mode:?}");
    }
    // JPY has no minor unit.
    assert_eq!(
        Money::round_to_minor(dec!(2.5), Currency::JPY, HalfEven)
            .unwrap()
            .to_minor(),
        2
    );
    assert_eq!(
        Money::round_to_minor(dec!(2.5), Currency::JPY, HalfUp)
            .unwrap()
            .to_minor(),
        3
    );
}

#[test]
fn round_to_unit_table() {
    // Rounding to a coarser unit (whole or half yuan) follows the same modes.
    use Rounding::*;
    let table: &[(Decimal, Decimal, Rounding, Decimal)] = &[
        (dec!(2.50), dec!(1), HalfUp, dec!(3)),
        (dec!(2.50), dec!(1), HalfEven, dec!(2)),
        (dec!(3.50), dec!(1), HalfEven, dec!(4)),
        (dec!(2.01), dec!(1), Up, dec!(3)),
        (dec!(2.99), dec!(1), Down, dec!(2)),
        (dec!(-2.50), dec!(1), HalfUp, dec!(-3)),
        (dec!(2.26), dec!(0.5), HalfUp, dec!(2.5)),
        (dec!(2.24), dec!(0.5), HalfUp, dec!(2.0)),
        (dec!(2.25), dec!(0.5), HalfEven, dec!(2.0)),
        (dec!(2.75), dec!(0.5), HalfEven, dec!(3.0)),
        (dec!(2.01), dec!(0.5), Up, dec!(2.5)),
        (dec!(7), dec!(0.01), HalfUp, dec!(7)),
        (dec!(5.535), dec!(0.10), HalfUp, dec!(5.5)),
    ];
    for (value, unit, mode, expected) in table {
        let got = Money::round_to_unit(*value, *unit, Currency::CNY, *mode).unwrap();
        assert_eq!(got.amount(), *expected, "{value} to {unit} {mode:?}");
        assert_eq!(got.amount().scale(), 2);
    }
    for bad in [dec!(0), dec!(-1), dec!(0.001)] {
        assert!(matches!(
            Money::round_to_unit(dec!(1), bad, Currency::CNY, HalfUp),
            Err(MoneyError::BadRoundingUnit { .. })
        ));
    }
    assert!(Money::round_to_unit(dec!(1), dec!(0.5), Currency::JPY, HalfUp).is_err());
    assert!(Money::round_to_unit(Decimal::MAX, dec!(0.01), Currency::CNY, HalfUp).is_err());
}

#[test]
fn serde_round_trip() {
    // Money serializes with a string amount of exactly the minor digits and reads back equal.
    let m = Money::new(dec!(3), Currency::CNY).unwrap();
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(json, r#"{"amount":"3.00","currency":"CNY"}"#);
    assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
    let jpy = Money::from_minor(250, Currency::JPY);
    assert_eq!(
        serde_json::to_string(&jpy).unwrap(),
        r#"{"amount":"250","currency":"JPY"}"#
    );
    let neg = Money::from_minor(-7, Currency::HKD);
    let back: Money = serde_json::from_str(&serde_json::to_string(&neg).unwrap()).unwrap();
    assert_eq!(back, neg);
    assert_eq!(
        serde_json::from_str::<Money>(r#"{"amount":"3","currency":"CNY"}"#).unwrap(),
        m
    );
    assert_eq!(serde_json::to_string(&Currency::EUR).unwrap(), r#""EUR""#);
}

#[test]
fn serde_rejects_bad_input() {
    // Numbers, bad precision, odd syntax, unknown currencies and extra fields are rejected.
    let bad = [
        r#"{"amount":3.0,"currency":"CNY"}"#,
        r#"{"amount":3,"currency":"CNY"}"#,
        r#"{"amount":"3.001","currency":"CNY"}"#,
        r#"{"amount":"3.5","currency":"JPY"}"#,
        r#"{"amount":"1e2","currency":"CNY"}"#,
        r#"{"amount":"+3","currency":"CNY"}"#,
        r#"{"amount":" 3","currency":"CNY"}"#,
        r#"{"amount":"1_000","currency":"CNY"}"#,
        r#"{"amount":"3.","currency":"CNY"}"#,
        r#"{"amount":".5","currency":"CNY"}"#,
        r#"{"amount":"","currency":"CNY"}"#,
        r#"{"amount":"-","currency":"CNY"}"#,
        r#"{"amount":"99999999999999999999999999999","currency":"CNY"}"#,
        r#"{"amount":"100000000000000000","currency":"CNY"}"#,
        r#"{"amount":"3.00","currency":"XYZ"}"#,
        r#"{"amount":"3.00","currency":"cny"}"#,
        r#"{"amount":"3.00"}"#,
        r#"{"currency":"CNY"}"#,
        r#"{"amount":"3.00","currency":"CNY","extra":1}"#,
        r#""3.00 CNY""#,
    ];
    for json in bad {
        assert!(
            serde_json::from_str::<Money>(json).is_err(),
            "accepted {json}"
        );
    }
    let err = serde_json::from_str::<Money>(r#"{"amount":3.0,"currency":"CNY"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected a string"), "{err}");
    let err = serde_json::from_str::<Money>(r#"{"amount":"3.001","currency":"CNY"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad precision"), "{err}");
}

#[test]
fn parse_amount_accepts_plain_decimals() {
    // The strict amount syntax accepts ordinary decimals, including negatives and leading zeros.
    assert_eq!(
        Money::parse_amount("0.05", Currency::CNY)
            .unwrap()
            .to_minor(),
        5
    );
    assert_eq!(
        Money::parse_amount("-12.3", Currency::CNY)
            .unwrap()
            .to_minor(),
        -1230
    );
    assert_eq!(
        Money::parse_amount("007", Currency::JPY)
            .unwrap()
            .to_minor(),
        7
    );
    assert_eq!(
        Money::parse_amount("92233720368547758.07", Currency::CNY)
            .unwrap()
            .to_minor(),
        i64::MAX
    );
    assert!(Money::parse_amount("92233720368547758.08", Currency::CNY).is_err());
}
