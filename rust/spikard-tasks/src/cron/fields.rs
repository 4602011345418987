//! Range checks of a cron expression's numbers, in the user's terms (Unix weekdays), so
//! that an error names the field and its valid range (the parser's own messages say
//! "Minutes must be less than 59" for 61 and count weekdays from Sunday = 1).

/// Name, lowest and highest value of each field of a 6- or 7-field expression (seconds
/// first; weekdays as in Unix cron, 0 and 7 = Sunday; years as the parser accepts them).
const FIELDS: [(&str, u64, u64); 7] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("weekday", 0, 7),
    ("year", 1970, 2100),
];

/// Checks every number of `fields` (6 or 7, seconds first): values and range ends within
/// the field's range, ranges in ascending order, steps from 1 to the field's highest
/// value. Names (`MON`, `JAN`) and other syntax are left to the parser.
pub(super) fn check(fields: &[String]) -> Result<(), String> {
    for (field, &(name, lo, hi)) in fields.iter().zip(FIELDS.iter()) {
        for item in field.split(',') {
            check_item(item, name, lo, hi)?;
        }
    }
    Ok(())
}

fn check_item(item: &str, name: &str, lo: u64, hi: u64) -> Result<(), String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    if let Some(step) = step.filter(|s| is_number(s)) {
        if !in_range(step, 1, hi) {
            return Err(format!("{name} step {step} is out of range 1-{hi}"));
        }
    }
    let (start, end) = range.split_once('-').unwrap_or((range, ""));
    for n in [start, end].into_iter().filter(|s| is_number(s)) {
        if !in_range(n, lo, hi) {
            return Err(format!("{name} {n} is out of range {lo}-{hi}"));
        }
    }
    if is_number(start) && is_number(end) && start.parse::<u64>().ok() > end.parse().ok() {
        return Err(format!(
            "{name} range {start}-{end} runs backwards (write the smaller end first)"
        ));
    }
    Ok(())
}

/// True for a non-empty string of ASCII digits.
fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// True if the digits `s` are a number from `lo` to `hi` (too many digits are not).
fn in_range(s: &str, lo: u64, hi: u64) -> bool {
    s.parse::<u64>().is_ok_and(|n| (lo..=hi).contains(&n))
}

#[cfg(test)]
mod tests {
    use super::check;

    fn fields(expr: &str) -> Vec<String> {
        expr.split_whitespace().map(str::to_owned).collect()
    }

    fn error(expr: &str) -> String {
        check(&fields(expr)).unwrap_err()
    }

    #[test]
    fn every_field_names_its_range() {
        assert_eq!(error("60 * * * * *"), "second 60 is out of range 0-59");
        assert_eq!(error("0 61 * * * *"), "minute 61 is out of range 0-59");
        assert_eq!(error("0 0 24 * * *"), "hour 24 is out of range 0-23");
        assert_eq!(error("0 0 0 0 * *"), "day of month 0 is out of range 1-31");
        assert_eq!(
            error("0 0 0 32 * *"),
            "day of month 32 is out of range 1-31"
        );
        assert_eq!(error("0 0 0 * 13 *"), "month 13 is out of range 1-12");
        assert_eq!(error("0 0 0 * 0 *"), "month 0 is out of range 1-12");
        assert_eq!(error("0 0 0 * * 8"), "weekday 8 is out of range 0-7");
        assert_eq!(
            error("0 0 0 * * * 1969"),
            "year 1969 is out of range 1970-2100"
        );
    }

    #[test]
    fn ranges_lists_and_steps() {
        assert_eq!(error("0 5-60 * * * *"), "minute 60 is out of range 0-59");
        assert_eq!(error("0 1,2,99 * * * *"), "minute 99 is out of range 0-59");
        assert_eq!(
            error("0 30-10 * * * *"),
            "minute range 30-10 runs backwards (write the smaller end first)"
        );
        assert_eq!(error("0 */0 * * * *"), "minute step 0 is out of range 1-59");
        assert_eq!(error("0 0 */24 * * *"), "hour step 24 is out of range 1-23");
        assert_eq!(
            error("0 0 99999999999999999999999 * * *"),
            "hour 99999999999999999999999 is out of range 0-23"
        );
    }

    #[test]
    fn valid_fields_pass() {
        for expr in [
            "0 0 0 * * *",
            "59 59 23 31 12 7",
            "0 */15 9-17 1,15 JAN-MAR MON-FRI",
            "0 5/10 * ? * 0-7",
            "0 0 0 1 1 * 2030",
        ] {
            assert_eq!(check(&fields(expr)), Ok(()), "{expr}");
        }
    }
}
