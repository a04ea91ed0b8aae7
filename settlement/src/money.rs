//! Money per operator: the provider's service fee contract, the day's totals, and the
//! double-entry journal that must balance.
//!
//! Settled money is what the provider's bill confirms for a record the gateway also holds:
//! items classed `matched`, `amount_mismatch` (the provider's amount is what moved) and
//! `missing_at_operator` (the money is real; the operator's export lacks the tap). Everything
//! else is held for finance review (missing at gateway, duplicate) or carried to its own day
//! (other day), and is not in the day's payout.

use serde::Serialize;

use crate::error::SettlementError;

/// `6115059827` CNY minor units → "61,150,598.27 CNY"; exact, from integer minor units, with
/// thousands separators. How the statement files, the review UI and the command line write an
/// amount for people (machine-read files keep integer minor units).
pub fn format_minor(amount_minor: i64, currency: &str) -> String {
    let sign = if amount_minor < 0 { "-" } else { "" };
    let a = amount_minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", format_count(a / 100), a % 100)
}

/// `65668` → "65,668": a count written for people, with thousands separators.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(d);
    }
    grouped
}

/// An amount typed in major units (yuan), as finance enters an adjustment — "12.5",
/// "-1,200.00", "0.05" — to exact minor units. Refuses more than two decimals, anything not a
/// number, and amounts of 10¹³ yuan or more.
pub fn parse_major(text: &str) -> Result<i64, &'static str> {
    let t: String = text
        .trim()
        .chars()
        .filter(|c| *c != ',' && *c != ' ')
        .collect();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err("an amount like 12.50");
    }
    if fraction.len() > 2 {
        return Err("at most two decimals (fen)");
    }
    if whole.len() > 13 {
        return Err("too large");
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "too large")?
    };
    let fraction: i64 = format!("{fraction:0<2}").parse().unwrap_or(0);
    let minor = whole * 100 + fraction;
    Ok(if negative { -minor } else { minor })
}

/// The provider's service fee in an operator's contract: `fixed_minor` plus `rate_bp` basis
/// points of each payment, rounded half-up to the minor unit. A refund gives back the fee pro
/// rata, also rounded half-up (`docs/charging.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FeeContract {
    pub rate_bp: i64,
    pub fixed_minor: i64,
}

impl Default for FeeContract {
    /// The gateway's default: 60 bp (0.6 %), no fixed part.
    fn default() -> Self {
        FeeContract {
            rate_bp: 60,
            fixed_minor: 0,
        }
    }
}

impl FeeContract {
    /// The fee on a payment of `amount_minor` (> 0): the contract's fixed part plus the
    /// provider's rate by the shared rule (`turnpike_provider_wire::fee`), so settlement expects
    /// to the fen what the gateway books and the provider bills.
    pub fn fee_minor(&self, amount_minor: i64) -> i64 {
        self.fixed_minor + turnpike_provider_wire::fee::service_fee(amount_minor, self.rate_bp)
    }
}

/// A journal account (the gateway's, plus the payout the settlement instructs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Account {
    /// What we owe the operator.
    OperatorPayable,
    /// Money the provider holds for us, net of its fees.
    ProviderClearing,
    /// The provider's service fee, borne by the operator.
    ProviderFees,
    /// The day's transfer to the operator (negative net: what the operator owes back).
    OperatorPayout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalLine {
    pub account: Account,
    pub debit_minor: i64,
    pub credit_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    /// `payments`, `refunds`, `fee_allocation`, `payout`.
    pub description: &'static str,
    pub lines: Vec<JournalLine>,
}

/// One operator's settlement journal for one day and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Journal {
    pub business_day: String,
    pub operator_id: String,
    pub currency: String,
    pub entries: Vec<JournalEntry>,
}

/// The day's money for one operator in one currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub payments: u64,
    /// Settled payments by kind (metro fares, tolls, tickets) and their sum.
    pub gross_fares_minor: i64,
    pub gross_tolls_minor: i64,
    pub gross_tickets_minor: i64,
    pub gross_minor: i64,
    pub refunds: u64,
    /// Refunds and reversals.
    pub refunds_minor: i64,
    /// Fees the provider charged on payments, and gave back on refunds (its bill).
    pub fees_charged_minor: i64,
    pub fees_returned_minor: i64,
    /// Fees the contract gives for the settled payments (refunds: what the gateway booked).
    pub fees_expected_minor: i64,
    /// Items whose provider fee differs from the contract or the gateway.
    pub fee_exceptions: u64,
    /// gross − refunds − (fees charged − fees returned).
    pub net_payable_minor: i64,
}

impl Totals {
    pub(crate) fn add(&mut self, other: &Totals) {
        self.payments += other.payments;
        self.gross_fares_minor += other.gross_fares_minor;
        self.gross_tolls_minor += other.gross_tolls_minor;
        self.gross_tickets_minor += other.gross_tickets_minor;
        self.gross_minor += other.gross_minor;
        self.refunds += other.refunds;
        self.refunds_minor += other.refunds_minor;
        self.fees_charged_minor += other.fees_charged_minor;
        self.fees_returned_minor += other.fees_returned_minor;
        self.fees_expected_minor += other.fees_expected_minor;
        self.fee_exceptions += other.fee_exceptions;
    }

    pub(crate) fn finish(&mut self) {
        self.net_payable_minor = self.gross_minor
            - self.refunds_minor
            - (self.fees_charged_minor - self.fees_returned_minor);
    }
}

fn line(account: Account, signed_debit: i64) -> Option<JournalLine> {
    match signed_debit {
        0 => None,
        d if d > 0 => Some(JournalLine {
            account,
            debit_minor: d,
            credit_minor: 0,
        }),
        c => Some(JournalLine {
            account,
            debit_minor: 0,
            credit_minor: -c,
        }),
    }
}

fn entry(description: &'static str, lines: &[(Account, i64)]) -> Option<JournalEntry> {
    let lines: Vec<JournalLine> = lines.iter().filter_map(|&(a, d)| line(a, d)).collect();
    (!lines.is_empty()).then_some(JournalEntry { description, lines })
}

impl Journal {
    /// The day's entries from the totals: payments, refunds, the fee borne by the operator, and
    /// the payout, after which `operator_payable` and `provider_fees` are back at zero.
    pub fn build(business_day: &str, operator_id: &str, currency: &str, t: &Totals) -> Journal {
        use Account::*;
        let fees_net = t.fees_charged_minor - t.fees_returned_minor;
        let entries = [
            entry(
                "payments",
                &[
                    (ProviderClearing, t.gross_minor - t.fees_charged_minor),
                    (ProviderFees, t.fees_charged_minor),
                    (OperatorPayable, -t.gross_minor),
                ],
            ),
            entry(
                "refunds",
                &[
                    (OperatorPayable, t.refunds_minor),
                    (ProviderClearing, -(t.refunds_minor - t.fees_returned_minor)),
                    (ProviderFees, -t.fees_returned_minor),
                ],
            ),
            entry(
                "fee_allocation",
                &[(OperatorPayable, fees_net), (ProviderFees, -fees_net)],
            ),
            entry(
                "payout",
                &[
                    (OperatorPayable, t.net_payable_minor),
                    (OperatorPayout, -t.net_payable_minor),
                ],
            ),
        ];
        Journal {
            business_day: business_day.to_owned(),
            operator_id: operator_id.to_owned(),
            currency: currency.to_owned(),
            entries: entries.into_iter().flatten().collect(),
        }
    }

    /// The net (debits − credits) of one account over the day.
    pub fn net_minor(&self, account: Account) -> i64 {
        self.entries
            .iter()
            .flat_map(|e| &e.lines)
            .filter(|l| l.account == account)
            .map(|l| l.debit_minor - l.credit_minor)
            .sum()
    }

    /// Every entry balances, every line is one-sided and positive, the day balances, and the
    /// operator's payable is settled to zero by the payout. Otherwise the run must fail.
    pub fn check(&self) -> Result<(), SettlementError> {
        let fail = |detail: String| SettlementError::Unbalanced {
            day: self.business_day.clone(),
            operator: self.operator_id.clone(),
            currency: self.currency.clone(),
            detail,
        };
        let (mut debits, mut credits) = (0i128, 0i128);
        for e in &self.entries {
            let (mut d, mut c) = (0i128, 0i128);
            for l in &e.lines {
                if (l.debit_minor == 0) == (l.credit_minor == 0)
                    || l.debit_minor < 0
                    || l.credit_minor < 0
                {
                    return Err(fail(format!(
                        "entry {}: a line must be one positive debit or credit",
                        e.description
                    )));
                }
                d += l.debit_minor as i128;
                c += l.credit_minor as i128;
            }
            if d != c {
                return Err(fail(format!(
                    "entry {}: debits {d} ≠ credits {c}",
                    e.description
                )));
            }
            debits += d;
            credits += c;
        }
        if debits != credits {
            return Err(fail(format!("day: debits {debits} ≠ credits {credits}")));
        }
        for account in [Account::OperatorPayable, Account::ProviderFees] {
            let net = self.net_minor(account);
            if net != 0 {
                return Err(fail(format!("{account:?} ends the day at {net}, not 0")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_written_with_thousands_separators_and_read_in_yuan() {
        assert_eq!(format_minor(6_115_059_827, "CNY"), "61,150,598.27 CNY");
        assert_eq!(format_minor(-100_000, "CNY"), "-1,000.00 CNY");
        assert_eq!(format_minor(99_999, "CNY"), "999.99 CNY");
        assert_eq!(format_minor(5, "CNY"), "0.05 CNY");
        assert_eq!(format_count(65_668), "65,668");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(0), "0");
        assert_eq!(parse_major("12.5"), Ok(1250));
        assert_eq!(parse_major("-1,200.00"), Ok(-120_000));
        assert_eq!(parse_major("0.05"), Ok(5));
        assert_eq!(parse_major(".5"), Ok(50));
        assert_eq!(parse_major("3"), Ok(300));
        assert!(parse_major("1.234").is_err());
        assert!(parse_major("12a").is_err());
        assert!(parse_major("").is_err());
        assert!(parse_major("-").is_err());
        assert!(parse_major("1.2.3").is_err());
        assert!(parse_major("99999999999999").is_err());
    }
}
