//! The provider's service fee: what a payment costs the merchant, and what each refund gives
//! back. One rule, used by the gateway's journal, settlement's expectations and the sandbox's
//! trades and bill, so all three agree to the fen.
//!
//! - A payment's fee is `rate_bp` basis points of its amount, rounded half-up to the fen.
//! - Refunds give the fee back pro rata *cumulatively*: after refunds totalling `r` of an
//!   amount `a`, `round_half_up(fee × r / a)` has been given back. A refund's own share is that
//!   figure after it minus the figure before it. Each share is within a fen of its own pro rata
//!   amount, and the shares of a fully refunded payment add up to the whole fee.

/// `n / d` rounded half-up, for `n ≥ 0`, `d > 0`: in i64 when it fits (always, for real
/// amounts — settlement runs this for every record of a city's day), in i128 otherwise.
fn div_half_up(n: i128, d: i128) -> i64 {
    if let (Ok(n), Ok(d)) = (i64::try_from(n), i64::try_from(d)) {
        if let (Some(n2), Some(d2)) = (n.checked_mul(2), d.checked_mul(2)) {
            if let Some(top) = n2.checked_add(d) {
                return top / d2;
            }
        }
    }
    ((2 * n + d) / (2 * d)) as i64
}

/// The fee on a payment of `amount` (minor units) at `rate_bp` basis points.
pub fn service_fee(amount: i64, rate_bp: i64) -> i64 {
    if amount <= 0 || rate_bp <= 0 {
        return 0;
    }
    div_half_up(amount as i128 * rate_bp as i128, 10_000)
}

/// The fee given back after refunds totalling `refunded` of a payment of `amount` whose fee was
/// `fee`.
fn given_back(fee: i64, amount: i64, refunded: i64) -> i64 {
    if amount <= 0 || fee <= 0 {
        return 0;
    }
    let refunded = refunded.clamp(0, amount);
    div_half_up(fee as i128 * refunded as i128, amount as i128)
}

/// The part of `fee` that a refund of `refund` gives back, when `refunded_before` of the
/// payment's `amount` had been refunded already.
pub fn refund_fee(fee: i64, amount: i64, refunded_before: i64, refund: i64) -> i64 {
    given_back(fee, amount, refunded_before.saturating_add(refund))
        - given_back(fee, amount, refunded_before)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the fee rounds half-up.
    #[test]
    fn fees_round_half_up() {
        assert_eq!(service_fee(1000, 60), 6);
        assert_eq!(service_fee(250, 60), 2); // 1.5 → 2
        assert_eq!(service_fee(249, 60), 1); // 1.494 → 1
        assert_eq!(service_fee(0, 60), 0);
    }

    /// Proves single refunds are pro rata and a payment refunded in any number of parts gets
    /// exactly its whole fee back — where a share rounded on its own drifts by a fen.
    #[test]
    fn refunds_give_the_whole_fee_back() {
        assert_eq!(refund_fee(6, 1000, 0, 1000), 6);
        assert_eq!(refund_fee(6, 1000, 0, 500), 3);
        assert_eq!(refund_fee(2, 250, 0, 125), 1);
        // 5 fen on 9.00, refunded 3.00 three times: 1.67 each on its own rounds to 2+2+2 = 6.
        let parts = [300, 300, 300];
        let mut before = 0;
        let mut back = 0;
        for p in parts {
            let share = refund_fee(5, 900, before, p);
            assert!((share as f64 - 5.0 * p as f64 / 900.0).abs() <= 1.0);
            back += share;
            before += p;
        }
        assert_eq!(back, 5);
        for amount in [1, 7, 99, 1000, 12_345] {
            for fee in [0, 1, 2, 5, 61] {
                for step in [1, 3, 7, 250] {
                    let (mut before, mut back) = (0, 0);
                    while before < amount {
                        let part = step.min(amount - before);
                        back += refund_fee(fee, amount, before, part);
                        before += part;
                    }
                    assert_eq!(back, fee, "fee {fee} on {amount} in steps of {step}");
                }
            }
        }
    }
}
