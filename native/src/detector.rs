//! `Detector().scan(text)` (gateway/pii/detector.py, default types, no context)
//! compiled, for the gateway's fast path.
//!
//! Python is the reference: this file mirrors the candidate pattern
//! (gateway/pii/patterns.py, Python `re` semantics: leftmost position, then the
//! branches in order, greedy with backtracking until the trailing look-ahead
//! holds) and the validators (gateway/pii/identifiers.py), and answers `None`
//! ("ask Python") for every case it does not replicate exactly: fjordgate's own
//! tokens (`ps1:`, `enc1:`), IBANs of countries other than Norway (stdnum's
//! registry and national checks), birth dates within days of today, and
//! characters whose Python `str` semantics (isalnum, lower) are not copied here.
//! tests/gateway/test_native_detector.py holds it to the Python detector on the
//! corpus and on generated texts.
//!
//! Why compiled: a scan of a short note with one phone number costs 4-7 µs in
//! Python (the regex pass, then Python work per candidate), and the gateway scans
//! every free-text field of every event. Measured interleaved in one process:
//! 0.34-0.59 µs per synthetic note (10-12x less), 0.6-0.8 µs per corpus document
//! (14-15x less); `python -m bench.pii` times it beside the Python detector.
//!
//! A text is read as its code points, so offsets are character offsets, as
//! Python reports them.

use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

/// A position past either end of the text reads as this: no class holds it.
const NONE: u32 = u32::MAX;

const SPACE: u32 = b' ' as u32;
const DOT: u32 = b'.' as u32;
const DASH: u32 = b'-' as u32;
const PLUS: u32 = b'+' as u32;
const COLON: u32 = b':' as u32;
const AT: u32 = b'@' as u32;
const NEWLINE: u32 = b'\n' as u32;

/// "Not sure, ask Python": the whole text goes to the Python detector.
struct Defer;

type Verdict<T> = Result<T, Defer>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    Iban,
    Plate,
    PhoneIntl,
    Card,
    Eleven,
    Nine,
    Ipv4,
    PhoneLocal,
    Ipv6,
    Email,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PiiType {
    Fodselsnummer,
    DNummer,
    HNummer,
    Organisasjonsnummer,
    Kontonummer,
    Iban,
    PaymentCard,
    Email,
    Phone,
    IpAddress,
    VehiclePlate,
}

/// A finding as `gateway.pii.findings.Finding`: `[start, end)` in characters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Finding {
    start: usize,
    end: usize,
    kind: PiiType,
    synthetic: bool,
}

// -- character classes of the pattern (ASCII ranges, as the pattern writes them) ----------

fn is_digit(c: u32) -> bool {
    (b'0' as u32..=b'9' as u32).contains(&c)
}

fn is_upper(c: u32) -> bool {
    (b'A' as u32..=b'Z' as u32).contains(&c)
}

fn is_letter(c: u32) -> bool {
    is_upper(c) || (b'a' as u32..=b'z' as u32).contains(&c)
}

fn is_alnum(c: u32) -> bool {
    is_letter(c) || is_digit(c)
}

fn is_hex(c: u32) -> bool {
    is_digit(c)
        || (b'A' as u32..=b'F' as u32).contains(&c)
        || (b'a' as u32..=b'f' as u32).contains(&c)
}

/// ÆØÅæøå, which the plate and e-mail branches name.
fn is_nordic(c: u32) -> bool {
    matches!(c, 0xC6 | 0xD8 | 0xC5 | 0xE6 | 0xF8 | 0xE5)
}

/// `[A-FHJ-LNPR-VX-Z]`: the letters Norwegian plates use.
fn is_plate_letter(c: u32) -> bool {
    is_upper(c) && !matches!(char::from_u32(c), Some('G' | 'I' | 'M' | 'O' | 'Q' | 'W'))
}

/// `[A-Za-z0-9ÆØÅæøå-]`: a character of a domain label.
fn is_label(c: u32) -> bool {
    is_alnum(c) || is_nordic(c) || c == DASH
}

/// The text as the pattern sees it: code points, with `NONE` outside.
struct Text<'a> {
    t: &'a [u32],
}

impl Text<'_> {
    fn at(&self, i: usize) -> u32 {
        self.t.get(i).copied().unwrap_or(NONE)
    }

    /// The character `back` positions before `i` (`NONE` before the start).
    fn before(&self, i: usize, back: usize) -> u32 {
        i.checked_sub(back).map_or(NONE, |j| self.t[j])
    }

    /// How many characters of `class` start at `from`, at most `max`.
    fn run(&self, from: usize, max: usize, class: fn(u32) -> bool) -> usize {
        (0..max).take_while(|&k| class(self.at(from + k))).count()
    }

    /// A fixed piece of the pattern at `from`: `#` stands for `[0-9]`, any other
    /// byte for itself. Its end, if it matches.
    fn fixed(&self, from: usize, piece: &[u8]) -> Option<usize> {
        let ok = piece.iter().enumerate().all(|(k, &p)| {
            let c = self.at(from + k);
            if p == b'#' {
                is_digit(c)
            } else {
                c == u32::from(p)
            }
        });
        ok.then_some(from + piece.len())
    }

    /// `_DIGIT_START` matched at `p`: a digit, not after a digit, nor after a dot
    /// that follows a digit (`(?<![0-9][0-9])(?<![0-9][.][0-9])`).
    fn digit_start(&self, p: usize) -> bool {
        is_digit(self.at(p))
            && !is_digit(self.before(p, 1))
            && !(self.before(p, 1) == DOT && is_digit(self.before(p, 2)))
    }

    /// `_DIGIT_END` at `e`: `(?![.]?[0-9])`.
    fn digit_end(&self, e: usize) -> bool {
        let c = self.at(e);
        !(is_digit(c) || (c == DOT && is_digit(self.at(e + 1))))
    }

    /// A fixed piece followed by `_DIGIT_END`.
    fn fixed_digit_end(&self, from: usize, piece: &[u8]) -> Option<usize> {
        self.fixed(from, piece).filter(|&e| self.digit_end(e))
    }
}

// -- the branches of patterns.BRANCHES, each from its first character at `p` -------------
// Each returns the end Python's `re` chooses: alternatives in order, greedy
// repetitions longest first, the first choice whose look-ahead holds.

/// `iban`: `[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])`
fn iban(s: &Text, p: usize) -> Option<usize> {
    fn body(c: u32) -> bool {
        is_upper(c) || is_digit(c)
    }
    if !is_upper(s.at(p)) || is_alnum(s.before(p, 1)) || !is_upper(s.at(p + 1)) {
        return None;
    }
    s.fixed(p + 2, b"##")?;
    // Each group matches one way only (a space is no [A-Z0-9]): as many as fit, then fewer.
    let mut ends = [0usize; 8];
    ends[0] = p + 4;
    let mut groups = 0;
    while groups < 7 {
        let q = ends[groups];
        let from = if s.at(q) == SPACE { q + 1 } else { q };
        if s.run(from, 4, body) < 4 {
            break;
        }
        groups += 1;
        ends[groups] = from + 4;
    }
    let end_ok = |e: usize| !is_alnum(s.at(e));
    for k in (2..=groups).rev() {
        let q = ends[k];
        // (?:[ ]?[A-Z0-9]{1,3})? : with the space, without it, then not at all.
        if s.at(q) == SPACE {
            for j in (1..=s.run(q + 1, 3, body)).rev() {
                if end_ok(q + 1 + j) {
                    return Some(q + 1 + j);
                }
            }
        }
        for j in (1..=s.run(q, 3, body)).rev() {
            if end_ok(q + j) {
                return Some(q + j);
            }
        }
        if end_ok(q) {
            return Some(q);
        }
    }
    None
}

/// `plate`: two plate letters (not after a letter or digit), `[ ]?[1-9][0-9]{4}`, `_DIGIT_END`.
fn plate(s: &Text, p: usize) -> Option<usize> {
    let prev = s.before(p, 1);
    if !is_plate_letter(s.at(p))
        || is_alnum(prev)
        || is_nordic(prev)
        || !is_plate_letter(s.at(p + 1))
    {
        return None;
    }
    // With the space if there is one (without it a space is no [1-9]).
    let q = if s.at(p + 2) == SPACE { p + 3 } else { p + 2 };
    if s.at(q) == u32::from(b'0') {
        return None;
    }
    s.fixed_digit_end(q, b"#####")
}

/// `phone_intl`: `+` (not after a letter or digit) or `00` (not after a digit or
/// dot), then `47` and a Norwegian number in its groupings, or another country.
fn phone_intl(s: &Text, p: usize) -> Option<usize> {
    let prev = s.before(p, 1);
    let q = if s.at(p) == PLUS && !is_alnum(prev) {
        p + 1
    } else if s.at(p) == u32::from(b'0')
        && !is_digit(prev)
        && prev != DOT
        && s.at(p + 1) == u32::from(b'0')
    {
        p + 2
    } else {
        return None;
    };
    if s.fixed(q, b"47").is_some() {
        // 47[ ]?(?:[0-9]{8}|[0-9]{2}(?:[ ][0-9]{2}){3}|[0-9]{3}[ ][0-9]{2}[ ][0-9]{3});
        // the other alternative starts with (?!47).
        let r = if s.at(q + 2) == SPACE { q + 3 } else { q + 2 };
        return [&b"########"[..], b"## ## ## ##", b"### ## ###"]
            .iter()
            .find_map(|piece| s.fixed_digit_end(r, piece));
    }
    // [1-9][0-9]{0,3}(?:[ -]?[0-9]{1,4}){2,6}
    if !is_digit(s.at(q)) || s.at(q) == u32::from(b'0') {
        return None;
    }
    let mut failed = [0u8; 64]; // (position - q, groups) known to fail: bits 0..=6
    for k in (0..=s.run(q + 1, 3, is_digit)).rev() {
        if let Some(e) = intl_groups(s, q, q + 1 + k, 0, &mut failed) {
            return Some(e);
        }
    }
    None
}

/// `(?:[ -]?[0-9]{1,4}){2,6}` then `_DIGIT_END`, from `pos` after `done` groups, in
/// the order of sre's greedy repeat: one more group first (its digits longest
/// first), then the rest of the pattern. `failed` remembers states that failed
/// (the answer depends on the state only), so a long digit run costs little.
fn intl_groups(s: &Text, q: usize, pos: usize, done: u8, failed: &mut [u8; 64]) -> Option<usize> {
    let slot = pos - q;
    if failed[slot] & (1 << done) != 0 {
        return None;
    }
    if done < 6 {
        // [ -]? takes a separator if there is one (without it, a separator is no digit).
        let from = if matches!(s.at(pos), SPACE | DASH) {
            pos + 1
        } else {
            pos
        };
        for j in (1..=s.run(from, 4, is_digit)).rev() {
            if let Some(e) = intl_groups(s, q, from + j, done + 1, failed) {
                return Some(e);
            }
        }
    }
    if done >= 2 && s.digit_end(pos) {
        return Some(pos);
    }
    failed[slot] |= 1 << done;
    None
}

/// `card`: 13-19 digits, contiguous, in groups of 4 (space or dash) or Amex 4-6-5.
fn card(s: &Text, p: usize) -> Option<usize> {
    if !s.digit_start(p) {
        return None;
    }
    let q = s.fixed(p + 1, b"###")?;
    // [0-9]{9,15}
    for k in (9..=s.run(q, 15, is_digit)).rev() {
        if s.digit_end(q + k) {
            return Some(q + k);
        }
    }
    // [ ][0-9]{4}[ ][0-9]{4}[ ][0-9]{1,7} and the same with dashes
    for grouped in [&b" #### #### "[..], b"-####-####-"] {
        if let Some(r) = s.fixed(q, grouped) {
            for k in (1..=s.run(r, 7, is_digit)).rev() {
                if s.digit_end(r + k) {
                    return Some(r + k);
                }
            }
        }
    }
    s.fixed_digit_end(q, b" ###### #####")
}

/// `eleven`: 11 digits as 01019012345, 010190 12345, 010190-12345, 1234.56.78903, 1234 56 78903.
fn eleven(s: &Text, p: usize) -> Option<usize> {
    if !s.digit_start(p) {
        return None;
    }
    let q = s.fixed(p + 1, b"###")?;
    // [0-9]{2}[ -]?[0-9]{5}
    if let Some(r) = s.fixed(q, b"##") {
        let from = if matches!(s.at(r), SPACE | DASH) {
            r + 1
        } else {
            r
        };
        if let Some(e) = s.fixed_digit_end(from, b"#####") {
            return Some(e);
        }
    }
    s.fixed_digit_end(q, b".##.#####")
        .or_else(|| s.fixed_digit_end(q, b" ## #####"))
}

/// `nine`: 123456789 or 123 456 789.
fn nine(s: &Text, p: usize) -> Option<usize> {
    if !s.digit_start(p) {
        return None;
    }
    let q = s.fixed(p + 1, b"##")?;
    s.fixed_digit_end(q, b"######")
        .or_else(|| s.fixed_digit_end(q, b" ### ###"))
}

/// `ipv4`: `[0-9]{1,3}(?:[.][0-9]{1,3}){3}` then `_DIGIT_END`.
fn ipv4(s: &Text, p: usize) -> Option<usize> {
    fn octets(s: &Text, pos: usize, done: usize) -> Option<usize> {
        if done == 3 {
            return s.digit_end(pos).then_some(pos);
        }
        if s.at(pos) != DOT {
            return None;
        }
        (1..=s.run(pos + 1, 3, is_digit))
            .rev()
            .find_map(|j| octets(s, pos + 1 + j, done + 1))
    }
    if !s.digit_start(p) {
        return None;
    }
    (0..=s.run(p + 1, 2, is_digit))
        .rev()
        .find_map(|k| octets(s, p + 1 + k, 0))
}

/// `phone_local`: 8 digits (not after "+" and a digit) as 91234567, 91 23 45 67, 912 34 567.
fn phone_local(s: &Text, p: usize) -> Option<usize> {
    if !s.digit_start(p) || s.before(p, 1) == PLUS || !is_digit(s.at(p + 1)) {
        return None;
    }
    [&b"######"[..], b" ## ## ##", b"# ## ###"]
        .iter()
        .find_map(|piece| s.fixed_digit_end(p + 2, piece))
}

/// `ipv6`: `[0-9A-Fa-f:]` (not after `[0-9A-Za-z:.]`), `[0-9A-Fa-f]{0,3}:[0-9A-Fa-f:.]{1,41}(?![0-9A-Za-z:])`.
fn ipv6(s: &Text, p: usize) -> Option<usize> {
    fn body(c: u32) -> bool {
        is_hex(c) || c == COLON || c == DOT
    }
    let first = s.at(p);
    let prev = s.before(p, 1);
    if !(is_hex(first) || first == COLON) || is_alnum(prev) || prev == COLON || prev == DOT {
        return None;
    }
    for k in (0..=s.run(p + 1, 3, is_hex)).rev() {
        let colon = p + 1 + k;
        if s.at(colon) != COLON {
            continue;
        }
        for j in (1..=s.run(colon + 1, 41, body)).rev() {
            let e = colon + 1 + j;
            if !(is_alnum(s.at(e)) || s.at(e) == COLON) {
                return Some(e);
            }
        }
    }
    None
}

/// `email`: `@(?=[A-Za-z0-9ÆØÅæøå])(?:[A-Za-z0-9ÆØÅæøå-]{1,63}[.]){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])`.
fn email(s: &Text, p: usize) -> Option<usize> {
    if s.at(p) != AT || !(is_alnum(s.at(p + 1)) || is_nordic(s.at(p + 1))) {
        return None;
    }
    // A label ends at its dot only (a dot is no label character): each label matches
    // one way, so the labels are as many as fit, then fewer.
    let mut ends = [0usize; 9];
    ends[0] = p + 1;
    let mut labels = 0;
    while labels < 8 {
        let q = ends[labels];
        let n = s.run(q, 63, is_label);
        if n == 0 || s.at(q + n) != DOT {
            break;
        }
        labels += 1;
        ends[labels] = q + n + 1;
    }
    for k in (1..=labels).rev() {
        let q = ends[k];
        for j in (2..=s.run(q, 24, is_letter)).rev() {
            let e = q + j;
            if !(is_alnum(s.at(e)) || s.at(e) == DASH) {
                return Some(e);
            }
        }
    }
    None
}

/// The first branch that matches at `p`, in the order of patterns.BRANCHES.
fn branch_at(s: &Text, p: usize) -> Option<(Shape, usize)> {
    type Branch = fn(&Text, usize) -> Option<usize>;
    const BRANCHES: [(Shape, Branch); 10] = [
        (Shape::Iban, iban),
        (Shape::Plate, plate),
        (Shape::PhoneIntl, phone_intl),
        (Shape::Card, card),
        (Shape::Eleven, eleven),
        (Shape::Nine, nine),
        (Shape::Ipv4, ipv4),
        (Shape::PhoneLocal, phone_local),
        (Shape::Ipv6, ipv6),
        (Shape::Email, email),
    ];
    // patterns.FIRST_CHARACTERS: every branch starts with one of [0-9A-Za-f+@:].
    let first = s.at(p);
    if !(is_upper(first) || is_hex(first) || matches!(first, PLUS | AT | COLON)) {
        return None;
    }
    BRANCHES
        .iter()
        .find_map(|&(shape, branch)| branch(s, p).map(|end| (shape, end)))
}

fn is_anchor(c: u32) -> bool {
    is_digit(c) || c == AT || c == COLON
}

/// The next candidate at or after `from`: `CANDIDATES.search(text, from)`.
///
/// Every branch has a digit, '@' or ':' among its first five characters (the
/// detector's `_ANCHOR`), so positions more than four before the next one are skipped.
fn search(s: &Text, from: usize) -> Option<(Shape, usize, usize)> {
    let n = s.t.len();
    let mut p = from;
    let mut anchor = from;
    while p < n {
        if anchor < p {
            anchor = p;
        }
        while anchor < n && !is_anchor(s.t[anchor]) {
            anchor += 1;
        }
        if anchor == n {
            return None;
        }
        p = p.max(anchor.saturating_sub(4));
        if let Some((shape, end)) = branch_at(s, p) {
            return Some((shape, p, end));
        }
        p += 1;
    }
    None
}

// -- the validators (gateway/pii/identifiers.py) ----------------------------------------

fn digit_values(chars: &[u32]) -> Vec<u8> {
    // detector._only_digits: the separators are spaces, dots, dashes and plus.
    chars
        .iter()
        .filter(|&&c| is_digit(c))
        .map(|&c| (c - u32::from(b'0')) as u8)
        .collect()
}

/// `(11 - weighted sum) % 11` with Python's modulo.
fn mod11(code: &[u8], weights: &[i32]) -> i32 {
    let total: i32 = weights
        .iter()
        .zip(code)
        .map(|(&w, &d)| w * i32::from(d))
        .sum();
    (11 - total).rem_euclid(11)
}

/// identifiers.luhn_ok.
fn luhn_ok(code: &[u8]) -> bool {
    const DOUBLED: [u32; 10] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];
    let total: u32 = code
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &d)| {
            if k % 2 == 1 {
                DOUBLED[d as usize]
            } else {
                u32::from(d)
            }
        })
        .sum();
    total.is_multiple_of(10)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        _ => 28,
    }
}

/// Today as days since 1970-01-01 in UTC. Python's `date.today()` is local time
/// (and identifiers._TODAY keeps it up to a minute): within a day of this.
fn utc_today() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (now / 86_400) as i64
}

/// identifiers._birth_date_ok: stdnum's century rules, a real date, not in the future.
/// A date within three days of today defers: the local date Python compares with
/// is not known here exactly.
fn birth_date_ok(day: i64, month: i64, year: i64, individual: i64) -> Verdict<bool> {
    let year = if individual < 500 {
        year + 1900
    } else if individual < 750 && year >= 54 {
        year + 1800
    } else if year < 40 {
        year + 2000
    } else if individual >= 900 {
        year + 1900
    } else {
        return Ok(false);
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Ok(false);
    }
    let born = days_from_civil(year, month, day);
    let today = utc_today();
    if born <= today - 3 {
        Ok(true)
    } else if born >= today + 3 {
        Ok(false)
    } else {
        Err(Defer)
    }
}

/// identifiers.classify_eleven: the personal number (type, synthetic) if any, and
/// whether it is a valid kontonummer.
fn classify_eleven(code: &[u8]) -> Verdict<(Option<(PiiType, bool)>, bool)> {
    if code[..4] == [0, 0, 0, 0] {
        return Ok((None, luhn_ok(&code[4..]))); // postgiro account
    }
    if mod11(code, &[5, 4, 3, 2, 7, 6, 5, 4, 3, 2]) != i32::from(code[10]) {
        return Ok((None, false));
    }
    if mod11(code, &[3, 7, 6, 1, 8, 9, 4, 5, 2]) != i32::from(code[9]) {
        return Ok((None, true));
    }
    let number = |a: usize, b: usize| code[a..b].iter().fold(0i64, |n, &d| n * 10 + i64::from(d));
    let mut day = number(0, 2);
    let mut month = number(2, 4);
    let synthetic = month > 80;
    if synthetic {
        month -= 80;
    }
    let mut kind = PiiType::Fodselsnummer;
    if day >= 80 {
        return Ok((None, true)); // FH-number
    }
    if day > 40 {
        day -= 40;
        kind = PiiType::DNummer;
    }
    if month > 40 {
        month -= 40;
        kind = PiiType::HNummer;
    }
    if !birth_date_ok(day, month, number(4, 6), number(6, 9))? {
        return Ok((None, true));
    }
    Ok((Some((kind, synthetic)), true))
}

/// identifiers.classify_organisasjonsnummer.
fn classify_organisasjonsnummer(code: &[u8]) -> Option<(PiiType, bool)> {
    if !matches!(code[0], 8 | 9 | 2 | 3) {
        return None;
    }
    if mod11(code, &[3, 2, 7, 6, 5, 4, 3, 2]) != i32::from(code[8]) {
        return None;
    }
    Some((PiiType::Organisasjonsnummer, matches!(code[0], 2 | 3)))
}

/// identifiers.is_iban for a candidate; only Norway's (other countries defer).
fn is_iban(chars: &[u32]) -> Verdict<bool> {
    let compact: Vec<u32> = chars.iter().copied().filter(|&c| c != SPACE).collect();
    if compact[0] != u32::from(b'N') || compact[1] != u32::from(b'O') {
        return Err(Defer);
    }
    // stdnum's BBAN format for NO: 4!n6!n1!n.
    let bban = &compact[4..];
    if bban.len() != 11 || !bban.iter().all(|&c| is_digit(c)) {
        return Ok(false);
    }
    // ISO 7064 mod 97-10 over BBAN, "NO" as 23 24, the check digits.
    const NORWAY: [u32; 4] = [b'2' as u32, b'3' as u32, b'2' as u32, b'4' as u32];
    let digits = bban.iter().chain(&NORWAY).chain(&compact[2..4]);
    let rest = digits.fold(0u32, |r, &c| (r * 10 + (c - u32::from(b'0'))) % 97);
    if rest != 1 {
        return Ok(false);
    }
    Ok(classify_eleven(&digit_values(bban))?.1)
}

/// identifiers.is_payment_card: a scheme's prefix and length, then Luhn.
fn is_payment_card(code: &[u8]) -> bool {
    // (low, high, width of the prefix, allowed lengths as bits)
    const fn lengths(from: u32, to: u32) -> u32 {
        (u32::MAX >> (31 - to)) & !((1 << from) - 1)
    }
    const PREFIXES: [(u32, u32, usize, u32); 15] = [
        (4, 4, 1, 1 << 13 | 1 << 16 | 1 << 19), // Visa
        (51, 55, 2, 1 << 16),                   // Mastercard
        (2221, 2720, 4, 1 << 16),
        (34, 34, 2, 1 << 15), // American Express
        (37, 37, 2, 1 << 15),
        (6011, 6011, 4, lengths(16, 19)), // Discover
        (644, 649, 3, lengths(16, 19)),
        (65, 65, 2, lengths(16, 19)),
        (3528, 3589, 4, lengths(16, 19)), // JCB
        (300, 305, 3, lengths(14, 19)),   // Diners Club
        (36, 36, 2, lengths(14, 19)),
        (38, 39, 2, lengths(16, 19)),
        (50, 50, 2, lengths(12, 19)), // Maestro
        (56, 58, 2, lengths(12, 19)),
        (67, 67, 2, lengths(12, 19)),
    ];
    let length = code.len();
    for (low, high, width, allowed) in PREFIXES {
        let head = code[..width].iter().fold(0, |n, &d| n * 10 + u32::from(d));
        if (low..=high).contains(&head) && length < 32 && allowed & (1 << length) != 0 {
            return luhn_ok(code);
        }
    }
    false
}

/// identifiers.is_ip_address for a dotted quad (the `ipv4` candidate's shape).
fn ipv4_ok(chars: &[u32]) -> bool {
    let parts: Vec<&[u32]> = chars.split(|&c| c == DOT).collect();
    parts.len() == 4
        && parts.iter().all(|part| {
            // ipaddress.IPv4Address._parse_octet
            !part.is_empty()
                && part.len() <= 3
                && part.iter().all(|&c| is_digit(c))
                && (part[0] != u32::from(b'0') || part.len() == 1)
                && part.iter().fold(0, |n, &c| n * 10 + (c - u32::from(b'0'))) <= 255
        })
}

/// `ipaddress.ip_address(text)` succeeds, for text of hex digits, ':' and '.' with a
/// ':' (IPv4Address refuses it; this is IPv6Address._ip_int_from_string).
fn ipv6_ok(chars: &[u32]) -> bool {
    let mut parts: Vec<&[u32]> = chars.split(|&c| c == COLON).collect();
    if parts.len() < 3 {
        return false;
    }
    // An IPv4 suffix becomes two hextets (always valid ones).
    const HEXTET: &[u32] = &[b'0' as u32];
    if parts[parts.len() - 1].contains(&DOT) {
        if !ipv4_ok(parts.pop().unwrap_or_default()) {
            return false;
        }
        parts.extend([HEXTET, HEXTET]);
    }
    let n = parts.len();
    if n > 9 {
        return false;
    }
    let mut skip = None;
    for (i, part) in parts.iter().enumerate().take(n - 1).skip(1) {
        if part.is_empty() {
            if skip.is_some() {
                return false;
            }
            skip = Some(i);
        }
    }
    let (hi, lo) = if let Some(k) = skip {
        let (mut hi, mut lo) = (k, n - k - 1);
        if parts[0].is_empty() {
            hi -= 1;
            if hi > 0 {
                return false;
            }
        }
        if parts[n - 1].is_empty() {
            lo -= 1;
            if lo > 0 {
                return false;
            }
        }
        if hi + lo >= 8 {
            return false;
        }
        (hi, lo)
    } else {
        if n != 8 || parts[0].is_empty() || parts[n - 1].is_empty() {
            return false;
        }
        (n, 0)
    };
    // IPv6Address._parse_hextet: 1 to 4 hex digits (int('', 16) fails).
    let hextet =
        |part: &&[u32]| !part.is_empty() && part.len() <= 4 && part.iter().all(|&c| is_hex(c));
    parts[..hi].iter().all(hextet) && parts[n - lo..].iter().all(hextet)
}

// -- the detector's rules (gateway/pii/detector.py) -------------------------------------

/// `str.isalnum()` for a character before an e-mail's '@': known for Latin-1 and the
/// General Punctuation block (checked against Python), not sure otherwise.
fn python_isalnum(c: u32) -> Verdict<bool> {
    match c {
        0..=0x7F => Ok(is_alnum(c)),
        0xAA | 0xB2 | 0xB3 | 0xB5 | 0xB9 | 0xBA | 0xBC..=0xBE => Ok(true),
        0xC0..=0xFF => Ok(c != 0xD7 && c != 0xF7),
        0x80..=0xBF | 0x2000..=0x206F => Ok(false),
        _ => Err(Defer),
    }
}

/// Detector._local_part_start: where the local part before the '@' at `at` starts.
fn local_part_start(t: &[u32], at: usize) -> Verdict<Option<usize>> {
    const SYMBOLS: &[u8] = b"!#$%&'*+-/=?^_`{|}~.";
    let lowest = at.saturating_sub(64);
    let mut i = at;
    while i > lowest {
        let c = t[i - 1];
        if python_isalnum(c)? || SYMBOLS.iter().any(|&b| u32::from(b) == c) {
            i -= 1;
        } else {
            break;
        }
    }
    while i < at && t[i] == DOT {
        i += 1;
    }
    if i == at || t[at - 1] == DOT {
        return Ok(None);
    }
    Ok(Some(i))
}

/// `str.isspace()` (the `\s` of a `str` pattern), every code point it holds.
fn python_isspace(c: u32) -> bool {
    matches!(
        c,
        0x09..=0x0D | 0x1C..=0x20 | 0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A
            | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
    )
}

/// `str.lower()` for finding the context words; defers for a character outside
/// ASCII that lowers to ASCII (K for Kelvin, İ), where a mistake could make a word.
fn python_lower(chars: &[u32]) -> Verdict<String> {
    let mut out = String::with_capacity(chars.len());
    for &c in chars {
        match char::from_u32(c) {
            Some(ch) if ch.is_ascii() => out.push(ch.to_ascii_lowercase()),
            Some(ch) => {
                for l in ch.to_lowercase() {
                    if l.is_ascii() {
                        return Err(Defer);
                    }
                    out.push(l);
                }
            }
            None => out.push(char::REPLACEMENT_CHARACTER), // a lone surrogate: no letter
        }
    }
    Ok(out)
}

/// Where the last sentence of `before` starts: the end of the last match of
/// detector._SENTENCE_END, `[.!?]\s+(?=[A-ZÆØÅ])|\n`, or 0.
fn last_sentence_start(before: &[u32]) -> usize {
    let capital = |c: u32| is_upper(c) || matches!(c, 0xC6 | 0xD8 | 0xC5);
    let (mut i, mut last) = (0, 0);
    while i < before.len() {
        let c = before[i];
        if matches!(char::from_u32(c), Some('.' | '!' | '?')) {
            let spaces = before[i + 1..]
                .iter()
                .take_while(|&&c| python_isspace(c))
                .count();
            let next = i + 1 + spaces;
            if spaces > 0 && next < before.len() && capital(before[next]) {
                last = next;
                i = next;
                continue;
            }
        } else if c == NEWLINE {
            last = i + 1;
        }
        i += 1;
    }
    last
}

/// detector._says with no context: one of `words` shortly before `start`, in the
/// same sentence and after the last digit.
fn says(t: &[u32], start: usize, words: &[&str]) -> Verdict<bool> {
    let before = &t[start.saturating_sub(40)..start];
    let lowered = python_lower(before)?;
    if !words.iter().any(|w| lowered.contains(w)) {
        return Ok(false);
    }
    let after_digit = before
        .iter()
        .rposition(|&c| is_digit(c))
        .map_or(0, |i| i + 1);
    let since = last_sentence_start(before).max(after_digit);
    let near = python_lower(&before[since..])?;
    Ok(words.iter().any(|w| near.contains(w)))
}

const ACCOUNT_WORDS: &[&str] = &["konto", "account", "kto"];
const ORGANISATION_WORDS: &[&str] = &["org", "foretak", "enhet", "mva", "brreg", "brønnøysund"];

/// Detector.scan(text) with the default types and no context; `Err(Defer)` where it
/// is not sure to agree with Python.
fn scan(t: &[u32]) -> Verdict<Vec<Finding>> {
    let s = Text { t };
    // Own tokens ("ps1:", "enc1:") are Python's to skip.
    let own_token = |prefix: &[u8]| {
        t.windows(prefix.len())
            .any(|w| w.iter().zip(prefix).all(|(&c, &b)| c == u32::from(b)))
    };
    if own_token(b"ps1:") || own_token(b"enc1:") {
        return Err(Defer);
    }
    let mut findings: Vec<Finding> = Vec::new();
    let mut from = 0;
    while let Some((shape, start, end)) = search(&s, from) {
        from = end;
        let written = &t[start..end];
        let mut finding = Finding {
            start,
            end,
            kind: PiiType::Phone,
            synthetic: false,
        };
        match shape {
            Shape::Eleven => {
                let (mut verdict, account) = classify_eleven(&digit_values(written))?;
                if account && (written.len() == 13 || says(t, start, ACCOUNT_WORDS)?) {
                    verdict = Some((PiiType::Kontonummer, false));
                }
                let Some((kind, synthetic)) = verdict else {
                    continue;
                };
                (finding.kind, finding.synthetic) = (kind, synthetic);
            }
            Shape::Nine => {
                let Some((kind, synthetic)) = classify_organisasjonsnummer(&digit_values(written))
                else {
                    continue;
                };
                if written.len() == 9 && !says(t, start, ORGANISATION_WORDS)? {
                    continue;
                }
                (finding.kind, finding.synthetic) = (kind, synthetic);
            }
            Shape::Email => {
                let Some(local) = local_part_start(t, start)? else {
                    continue;
                };
                // The address as a whole is the finding, not a number in its local part.
                while findings.last().is_some_and(|f| f.end > local) {
                    findings.pop();
                }
                finding.start = local;
                finding.kind = PiiType::Email;
            }
            Shape::PhoneLocal => {
                // Only mobile numbers (4xx, 9xx) are phones without their grouping.
                let first = written[0] - u32::from(b'0');
                if first <= 1 || (!written.contains(&SPACE) && first != 4 && first != 9) {
                    continue;
                }
            }
            Shape::PhoneIntl => {
                let mut digits = digit_values(written);
                let double_zero = written[0] == u32::from(b'0');
                if double_zero {
                    digits.drain(..2);
                }
                if digits.starts_with(&[4, 7]) && digits.len() == 10 {
                    if digits[2] <= 1 {
                        continue;
                    }
                } else if !(8..=15).contains(&digits.len())
                    || (double_zero && !written.contains(&SPACE) && !written.contains(&DASH))
                {
                    continue;
                }
            }
            Shape::Card => {
                if !is_payment_card(&digit_values(written)) {
                    continue;
                }
                finding.kind = PiiType::PaymentCard;
            }
            Shape::Iban => {
                if !is_iban(written)? {
                    continue;
                }
                finding.kind = PiiType::Iban;
            }
            Shape::Ipv4 => {
                if !ipv4_ok(written) {
                    continue;
                }
                finding.kind = PiiType::IpAddress;
            }
            Shape::Ipv6 => {
                let dots = written.iter().rev().take_while(|&&c| c == DOT).count();
                let stripped = &written[..written.len() - dots];
                if stripped.iter().filter(|&&c| c == COLON).count() < 2 || !ipv6_ok(stripped) {
                    continue;
                }
                finding.end -= dots;
                finding.kind = PiiType::IpAddress;
            }
            Shape::Plate => finding.kind = PiiType::VehiclePlate,
        }
        findings.push(finding);
    }
    Ok(findings)
}

/// A type's name as `gateway.pii.findings.PiiType` writes it.
fn type_str(kind: PiiType) -> &'static str {
    match kind {
        PiiType::Fodselsnummer => "fodselsnummer",
        PiiType::DNummer => "d_nummer",
        PiiType::HNummer => "h_nummer",
        PiiType::Organisasjonsnummer => "organisasjonsnummer",
        PiiType::Kontonummer => "kontonummer",
        PiiType::Iban => "iban",
        PiiType::PaymentCard => "payment_card",
        PiiType::Email => "email",
        PiiType::Phone => "phone",
        PiiType::IpAddress => "ip_address",
        PiiType::VehiclePlate => "vehicle_plate",
    }
}

/// `Detector().scan(text)` for the compiled core: `(start, end, type, synthetic)` per
/// finding, or None where the Python detector must decide.
pub(crate) fn scan_str(text: &str) -> Option<Vec<(usize, usize, &'static str, bool)>> {
    let chars: Vec<u32> = text.chars().map(u32::from).collect();
    let findings = scan(&chars).ok()?;
    Some(
        findings
            .iter()
            .map(|f| (f.start, f.end, type_str(f.kind), f.synthetic))
            .collect(),
    )
}

/// `[(f.start, f.end, f.type, f.synthetic) for f in Detector().scan(text)]`, or None
/// where the Python detector must decide: `scan_str`, the compiled core's own entry, so
/// the tests hold that path to the reference. A string that is not UTF-8 (a lone
/// surrogate, which no JSON event brings) is Python's to scan.
#[pyfunction]
pub fn scan_text<'py>(
    py: Python<'py>,
    text: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let Some(found) = text.to_str().ok().and_then(scan_str) else {
        return Ok(None);
    };
    let items = found
        .into_iter()
        .map(|(start, end, kind, synthetic)| (start, end, PyString::intern(py, kind), synthetic));
    Ok(Some(PyList::new(py, items)?))
}
