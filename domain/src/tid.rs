//! Timestamp identifiers (`specs/tid.md`): a 64-bit integer — top bit 0, 53 bits of
//! microseconds since the UNIX epoch, 10 bits of clock id — written as 13 base32-sortable
//! characters, so string order equals numeric order.
//!
//! Never reads the clock: [`TidClock`] is handed the wall-clock time by its caller, and only
//! guarantees that what it returns keeps increasing whatever that time does.

use crate::syntax::SyntaxError;

const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
const LEN: usize = 13;
const CLOCK_BITS: u32 = 10;
const CLOCK_MASK: u64 = (1 << CLOCK_BITS) - 1;
/// The largest timestamp a TID can hold (53 bits of microseconds, about year 2255).
pub const MAX_TIMESTAMP_MICROS: u64 = (1 << 53) - 1;

/// A TID. Ordered as its integer, which is also the order of its string form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid(u64);

impl Tid {
    /// The TID for a timestamp and clock id; `micros` is capped at [`MAX_TIMESTAMP_MICROS`]
    /// and `clock_id` keeps its low 10 bits.
    pub fn from_parts(micros: u64, clock_id: u16) -> Tid {
        let micros = micros.min(MAX_TIMESTAMP_MICROS);
        Tid((micros << CLOCK_BITS) | (u64::from(clock_id) & CLOCK_MASK))
    }

    /// Parses the 13-character form (anything [`crate::syntax::is_valid_tid`] accepts).
    pub fn parse(s: &str) -> Result<Tid, SyntaxError> {
        crate::syntax::is_valid_tid(s)
            .then_some(())
            .ok_or(SyntaxError::Tid(
                "expected 13 characters of 234567a-z, the first one of 234567abcdefghij",
            ))?;
        let mut v: u64 = 0;
        for c in s.bytes() {
            let digit = ALPHABET
                .iter()
                .position(|&a| a == c)
                .ok_or(SyntaxError::Tid("not base32-sortable"))?;
            // 13 digits of 5 bits are 65 bits; the syntax check keeps the first digit below 16,
            // so the value always fits a u64. (A first digit of `c`..`j` sets the top bit, which
            // generated TIDs never do; the syntax allows it, and so does this parser.)
            v = (v << 5) | digit as u64;
        }
        Ok(Tid(v))
    }

    /// The integer value.
    pub fn as_u64(&self) -> u64 {
        self.0
    }

    /// The TID with this integer value.
    pub fn from_u64(v: u64) -> Tid {
        Tid(v)
    }

    pub fn timestamp_micros(&self) -> u64 {
        self.0 >> CLOCK_BITS
    }

    pub fn clock_id(&self) -> u16 {
        // The mask keeps 10 bits, which always fit a u16.
        u16::try_from(self.0 & CLOCK_MASK).unwrap_or_default()
    }

    /// The 13-character base32-sortable form (owned: a TID is stored as its integer).
    pub fn as_str(&self) -> String {
        self.to_string()
    }

    fn encode(&self) -> [u8; LEN] {
        let mut out = [b'2'; LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (LEN - 1 - i);
            let digit = (self.0 >> shift) & 31;
            *slot = ALPHABET.get(digit as usize).copied().unwrap_or(b'2');
        }
        out
    }
}

impl std::fmt::Display for Tid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.encode();
        // Every byte comes from ALPHABET, so this is always ASCII.
        f.write_str(std::str::from_utf8(&bytes).unwrap_or("2222222222222"))
    }
}

impl std::str::FromStr for Tid {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tid::parse(s)
    }
}

impl TryFrom<&str> for Tid {
    type Error = SyntaxError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Tid::parse(s)
    }
}

impl From<Tid> for String {
    fn from(t: Tid) -> String {
        t.to_string()
    }
}

/// Hands out strictly increasing TIDs for one clock id, whatever the wall clock does.
#[derive(Debug, Clone)]
pub struct TidClock {
    clock_id: u16,
    /// Timestamp of the last TID handed out (0 before the first).
    last_micros: u64,
}

impl TidClock {
    pub fn new(clock_id: u16) -> TidClock {
        TidClock {
            clock_id: clock_id & CLOCK_MASK as u16,
            last_micros: 0,
        }
    }

    /// A clock with a random 10-bit clock id (so that several nodes rarely collide).
    pub fn with_random_clock_id() -> TidClock {
        TidClock::new(rand::random::<u16>())
    }

    pub fn clock_id(&self) -> u16 {
        self.clock_id
    }

    /// The next TID: the timestamp is `now_micros`, or one more than the last TID's if the
    /// clock has not moved forward (same microsecond, or went backwards).
    pub fn next(&mut self, now_micros: u64) -> Tid {
        let micros = now_micros
            .max(self.last_micros.saturating_add(1))
            .min(MAX_TIMESTAMP_MICROS);
        self.last_micros = micros;
        Tid::from_parts(micros, self.clock_id)
    }

    /// The repo `rev` rule: `max(next TID, prev + 1)`, so the result is always greater than
    /// `prev` even when `prev` was written by a clock running ahead of ours. Once past `prev`,
    /// this clock continues from there. (Only a `prev` equal to the largest 64-bit value
    /// has no successor; then that value is returned.)
    pub fn next_after(&mut self, now_micros: u64, prev: Option<&Tid>) -> Tid {
        let candidate = self.next(now_micros);
        let Some(prev) = prev else {
            return candidate;
        };
        if candidate > *prev {
            return candidate;
        }
        // Bump prev's timestamp and use our clock id; if that does not exceed prev (prev already
        // at the maximum timestamp), step the integer instead.
        let bumped = Tid::from_parts(prev.timestamp_micros().saturating_add(1), self.clock_id);
        let result = if bumped > *prev {
            bumped
        } else {
            Tid(prev.0.saturating_add(1))
        };
        self.last_micros = self.last_micros.max(result.timestamp_micros());
        result
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testing::fixture_lines;

    #[track_caller]
    fn check_round_trip(s: &str) {
        let tid = Tid::parse(s).unwrap();
        assert_eq!(tid.to_string(), s);
        assert_eq!(tid.as_str(), s);
        assert_eq!(Tid::from_parts(tid.timestamp_micros(), tid.clock_id()), tid);
    }

    #[test]
    fn fixture_round_trip() {
        let valid = fixture_lines("interop-tests/syntax/tid_syntax_valid.txt");
        for s in &valid {
            check_round_trip(s);
        }
        assert_eq!(valid.len(), 4);
        let invalid = fixture_lines("interop-tests/syntax/tid_syntax_invalid.txt");
        for s in &invalid {
            assert!(Tid::parse(s).is_err(), "{s:?}");
        }
        assert_eq!(invalid.len(), 9);
    }

    #[test]
    fn known_values() {
        assert_eq!(Tid::parse("2222222222222").unwrap().as_u64(), 0);
        assert_eq!(Tid::from_u64(0).to_string(), "2222222222222");
        assert_eq!(Tid::from_parts(0, 1).to_string(), "2222222222223");
        let t = Tid::from_parts(1_700_000_000_000_000, 42);
        assert_eq!(t.timestamp_micros(), 1_700_000_000_000_000);
        assert_eq!(t.clock_id(), 42);
        assert_eq!(
            Tid::from_parts(5, 0x7ff).clock_id(),
            0x3ff,
            "clock id keeps 10 bits"
        );
        assert_eq!(
            Tid::from_parts(u64::MAX, 0).timestamp_micros(),
            MAX_TIMESTAMP_MICROS
        );
        // The largest generated TID: top bit zero, everything else set.
        let max = Tid::from_u64(u64::MAX >> 1);
        assert_eq!(max.to_string(), "bzzzzzzzzzzzz");
        assert_eq!(Tid::from_parts(MAX_TIMESTAMP_MICROS, 0x3ff), max);
        check_round_trip("bzzzzzzzzzzzz");
        // The syntax allows a first digit up to `j` (64 bits); such values still round-trip.
        let top = Tid::parse("jzzzzzzzzzzzz").unwrap();
        assert_eq!(top.as_u64(), u64::MAX);
        assert_eq!(top.to_string(), "jzzzzzzzzzzzz");
        assert_eq!(Tid::parse("c222222222222").unwrap().as_u64(), 1 << 63);
        assert_eq!(
            Tid::parse("3jzfcijpj2z2a").unwrap().timestamp_micros(),
            1_688_137_381_887_007
        );
    }

    #[test]
    fn string_order_matches_numeric_order() {
        let mut values: Vec<u64> = vec![0, 1, 31, 32, 1023, 1024, u64::MAX, u64::MAX - 1, 1 << 63];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..500 {
            // xorshift: spread values across the whole 64-bit range
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x);
            values.push(x >> (x % 64));
        }
        let tids: Vec<Tid> = values.iter().map(|&v| Tid::from_u64(v)).collect();
        for a in &tids {
            for b in tids.iter().take(40) {
                assert_eq!(a.cmp(b), a.to_string().cmp(&b.to_string()), "{a} vs {b}");
            }
            assert_eq!(Tid::parse(&a.to_string()).unwrap(), *a);
        }
    }

    #[test]
    fn clock_is_strictly_monotonic() {
        let mut clock = TidClock::new(7);
        let times = [
            1_000_000u64,
            1_000_000,
            999_000,
            5,
            1_000_001,
            2_000_000,
            1_999_999,
            0,
        ];
        let tids: Vec<Tid> = times.iter().map(|&t| clock.next(t)).collect();
        for pair in tids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
            assert!(pair[0].to_string() < pair[1].to_string());
        }
        assert_eq!(tids[0].timestamp_micros(), 1_000_000);
        assert_eq!(
            tids[1].timestamp_micros(),
            1_000_001,
            "same microsecond bumps by one"
        );
        assert_eq!(
            tids[5].timestamp_micros(),
            2_000_000,
            "follows the clock when it moves on"
        );
        assert!(tids.iter().all(|t| t.clock_id() == 7));
    }

    #[test]
    fn clock_at_the_end_of_time_stays_within_range() {
        let mut clock = TidClock::new(0);
        let a = clock.next(u64::MAX);
        assert_eq!(a.timestamp_micros(), MAX_TIMESTAMP_MICROS);
        assert_eq!(a.as_u64() >> 63, 0, "generated TIDs keep the top bit zero");
    }

    #[test]
    fn random_clock_id_is_ten_bits() {
        for _ in 0..100 {
            assert!(TidClock::with_random_clock_id().clock_id() <= 0x3ff);
        }
    }

    #[test]
    fn next_after_prev_far_in_the_future() {
        let mut clock = TidClock::new(3);
        let now = 1_700_000_000_000_000;
        let prev = Tid::from_parts(now + 3_600_000_000, 900); // an hour ahead, other clock id
        let rev = clock.next_after(now, Some(&prev));
        assert!(rev > prev);
        assert_eq!(rev.timestamp_micros(), prev.timestamp_micros() + 1);
        assert_eq!(rev.clock_id(), 3);
        // The clock carries on from there: later revs and plain TIDs stay above it.
        let rev2 = clock.next_after(now + 1, Some(&rev));
        assert!(rev2 > rev);
        assert!(clock.next(now + 2) > rev2);

        // With prev in the past (or absent), the rev is just the clock's next TID.
        let old = Tid::from_parts(10, 0);
        let r = clock.next_after(now + 7_200_000_000, Some(&old));
        assert_eq!(r.timestamp_micros(), now + 7_200_000_000);
        assert!(clock.next_after(now, None) > r);

        // prev at the last timestamp: the integer steps instead.
        let edge = Tid::from_parts(MAX_TIMESTAMP_MICROS, 1);
        let after = TidClock::new(0).next_after(0, Some(&edge));
        assert!(after > edge);
        let last = Tid::from_u64(u64::MAX);
        assert_eq!(
            TidClock::new(0).next_after(0, Some(&last)),
            last,
            "no successor exists"
        );
    }
}
