//! The input rules for identifiers, decimal ids and human text, shared by every program that
//! takes them in (the gateway's admin and rider APIs, fare files). `docs/security.md` lists
//! them.
//!
//! - **Identifiers** (operators, terminals, stations, plazas, request ids) are ASCII only, so
//!   no homoglyph, direction override or invisible character can make two different ids look
//!   alike: [`check_id`] allows `A–Z a–z 0–9 - _`, [`check_location_id`] also `.` and `:` (GTFS
//!   stop ids such as `de:08111:6115:1` or `70061.1`).
//! - **Decimal ids** (riders, credentials, charges) are written one way only: no sign, no
//!   leading zero, at most `i64::MAX` ([`parse_decimal_id`]); `+5` and `007` are not ids.
//! - **Text** for people (reasons, notes, station names) may be any script, but not control or
//!   invisible formatting characters (bidirectional overrides, zero-width characters), and not
//!   blank or padded — [`check_text`].
//! - **Names** that stand for a party (an operator's name on statements and receipts) are text
//!   that also does not mix scripts the way a spoofed name does (Unicode TS #39's "highly
//!   restrictive" level: one script, or Latin with Han and Japanese or Korean) —
//!   [`check_name`].

use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

/// Longest identifier: operator, terminal (a certificate's common name) and request ids.
pub const ID_CHARS_MAX: usize = 64;
/// Longest location (station, stop or plaza) id.
pub const LOCATION_ID_CHARS_MAX: usize = 128;

/// Why an input was refused, in words an API error can carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {0} characters")]
    TooLong(usize),
    #[error("contains {0}, which is not allowed here ({1})")]
    Character(String, &'static str),
    #[error("starts or ends with white space")]
    Padded,
    #[error("mixes scripts the way a look-alike (spoofed) name does")]
    MixedScripts,
    #[error("is not a decimal id (digits without sign or leading zero, at most {max})", max = i64::MAX)]
    NotDecimalId,
}

/// How a character is named in an error: `'a'`, or `U+202E` for anything invisible.
fn describe(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("'{c}'")
    } else {
        format!("U+{:04X}", c as u32)
    }
}

fn check_ascii(s: &str, max: usize, extra: &[u8], allowed: &'static str) -> Result<(), InputError> {
    if s.is_empty() {
        return Err(InputError::Empty);
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || (c.is_ascii() && extra.contains(&(c as u8)))))
    {
        return Err(InputError::Character(describe(c), allowed));
    }
    if s.len() > max {
        return Err(InputError::TooLong(max));
    }
    Ok(())
}

/// An identifier: 1–64 of `A–Z a–z 0–9 - _`.
pub fn check_id(s: &str) -> Result<(), InputError> {
    check_ascii(s, ID_CHARS_MAX, b"-_", "A-Z a-z 0-9 - _")
}

/// A station, stop or plaza id: 1–128 of `A–Z a–z 0–9 - _ . :`.
pub fn check_location_id(s: &str) -> Result<(), InputError> {
    check_ascii(s, LOCATION_ID_CHARS_MAX, b"-_.:", "A-Z a-z 0-9 - _ . :")
}

/// A positive decimal id written the one canonical way.
pub fn parse_decimal_id(s: &str) -> Result<i64, InputError> {
    let canonical = !s.is_empty()
        && s.len() <= 19
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0');
    if !canonical {
        return Err(InputError::NotDecimalId);
    }
    s.parse().map_err(|_| InputError::NotDecimalId)
}

/// Invisible formatting characters (Unicode category Cf that matter in practice): they can
/// reorder or hide what a reader sees.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Text for people: 1–`chars_max` characters, no control or invisible formatting characters,
/// no white space at either end.
pub fn check_text(s: &str, chars_max: usize) -> Result<(), InputError> {
    if s.trim().is_empty() {
        return Err(InputError::Empty);
    }
    if let Some(c) = s.chars().find(|&c| c.is_control() || is_invisible(c)) {
        return Err(InputError::Character(
            describe(c),
            "control and invisible formatting characters are not",
        ));
    }
    if s.chars().count() > chars_max {
        return Err(InputError::TooLong(chars_max));
    }
    if s.trim() != s {
        return Err(InputError::Padded);
    }
    Ok(())
}

/// A party's name: [`check_text`], and at most "highly restrictive" in its mix of scripts.
pub fn check_name(s: &str, chars_max: usize) -> Result<(), InputError> {
    check_text(s, chars_max)?;
    // The levels are defined for identifiers: judge the letters and digits, not the spaces and
    // punctuation between them (which would make any text "unrestricted").
    let letters: String = s.chars().filter(|c| c.is_alphanumeric()).collect();
    if letters.detect_restriction_level() > RestrictionLevel::HighlyRestrictive {
        return Err(InputError::MixedScripts);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves identifiers are ASCII of the documented set and bounded.
    #[test]
    fn identifiers() {
        for ok in ["hz-metro", "gate_1", "A", &"x".repeat(64)] {
            assert_eq!(check_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a.b",
            "a\0b",
            "a\u{202E}b",
            "hаngzhou",
            "ä",
            &"x".repeat(65),
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_location_id("de:08111:6115:1"), Ok(()));
        assert_eq!(check_location_id("70061.1"), Ok(()));
        assert!(check_location_id("stop/1").is_err());
        assert!(check_location_id("xiang\u{0000}hu").is_err());
        assert_eq!(
            check_id("a\u{202E}b").unwrap_err().to_string(),
            "contains U+202E, which is not allowed here (A-Z a-z 0-9 - _)"
        );
    }

    /// Proves decimal ids have one spelling.
    #[test]
    fn decimal_ids() {
        assert_eq!(parse_decimal_id("5"), Ok(5));
        assert_eq!(parse_decimal_id("9223372036854775807"), Ok(i64::MAX));
        for bad in [
            "",
            "0",
            "+5",
            "-5",
            "007",
            " 5",
            "5 ",
            "9223372036854775808",
            "1e3",
        ] {
            assert_eq!(
                parse_decimal_id(bad),
                Err(InputError::NotDecimalId),
                "{bad:?}"
            );
        }
    }

    /// Proves names may be in any one script (or Latin with Han) but not spoofed, invisible or
    /// padded; text may mix scripts.
    #[test]
    fn text() {
        for ok in [
            "Hangzhou Metro",
            "杭州地铁",
            "杭州地铁 Hangzhou Metro 1号线",
            "Москва Метро",
        ] {
            assert_eq!(check_name(ok, 200), Ok(()), "{ok}");
        }
        assert_eq!(
            check_name("Hangzhou Metrо", 200),
            Err(InputError::MixedScripts)
        );
        assert_eq!(check_text("Москва / Moscow", 200), Ok(()));
        assert!(matches!(
            check_text("Metro\u{202E}ortem", 200),
            Err(InputError::Character(..))
        ));
        assert!(check_text("Metro\0", 200).is_err());
        assert!(check_text("zero\u{200B}width", 200).is_err());
        assert_eq!(check_text(" Metro", 200), Err(InputError::Padded));
        assert_eq!(check_text("   ", 200), Err(InputError::Empty));
        assert_eq!(check_text("abc", 2), Err(InputError::TooLong(2)));
    }
}
