//! Purchase logs: parsing the CDNOW layouts and summarising a customer's history
//! into (frequency, recency, T) as of a cut-off date.
//!
//! Time is measured in weeks (days / 7). Same-day purchases of one customer are one
//! transaction, as in Fader, Hardie & Lee (2005).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Days per model time unit (the models work in weeks).
pub const DAYS_PER_WEEK: f64 = 7.0;

/// One transaction (all purchases of a customer on one day).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Purchase {
    /// Calendar day of the transaction.
    pub day: NaiveDate,
    /// Number of items bought that day.
    pub quantity: f64,
    /// Money spent that day.
    pub amount: f64,
}

/// A customer's transactions, sorted by day, one per day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerHistory {
    /// Customer identifier (first column of the log).
    pub id: String,
    /// Transactions, ascending by day, at most one per day.
    pub purchases: Vec<Purchase>,
}

/// Repeat-purchase summary of one customer, in weeks.
///
/// `frequency` is the number of repeat transactions (after the first), `recency` the
/// time of the last transaction measured from the first, and `t` (the paper's `T`) the
/// time from the first transaction to the end of the observation period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rfm {
    /// Number of repeat transactions `x`.
    pub frequency: f64,
    /// Time of the last transaction since the first, `t_x` (0 when `x == 0`).
    pub recency: f64,
    /// Time from the first transaction to the cut-off, `T`.
    pub t: f64,
}

impl Rfm {
    /// Checks the invariants `x >= 0`, `0 <= t_x <= T`, and `t_x == 0` when `x == 0`.
    pub fn validate(&self) -> Result<()> {
        let ok = self.frequency >= 0.0
            && self.recency >= 0.0
            && self.t >= self.recency
            && self.t.is_finite()
            && (self.frequency > 0.0 || self.recency == 0.0);
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "summary {self:?} violates 0 <= recency <= T with recency 0 when frequency 0"
            )))
        }
    }
}

/// Weeks between two days (`to - from`).
pub fn weeks_between(from: NaiveDate, to: NaiveDate) -> f64 {
    (to - from).num_days() as f64 / DAYS_PER_WEEK
}

impl CustomerHistory {
    /// First transaction day, if any.
    pub fn first_day(&self) -> Option<NaiveDate> {
        self.purchases.first().map(|p| p.day)
    }

    /// Transactions on or before `end`.
    pub fn until(&self, end: NaiveDate) -> &[Purchase] {
        let n = self.purchases.partition_point(|p| p.day <= end);
        &self.purchases[..n]
    }

    /// Summary as of `end` (inclusive); `None` if the first purchase is after `end`.
    pub fn rfm(&self, end: NaiveDate) -> Option<Rfm> {
        let seen = self.until(end);
        let first = seen.first()?.day;
        let last = seen.last()?.day;
        Some(Rfm {
            frequency: (seen.len() - 1) as f64,
            recency: weeks_between(first, last),
            t: weeks_between(first, end),
        })
    }

    /// Number of transactions with `start < day <= end`.
    pub fn count_between(&self, start: NaiveDate, end: NaiveDate) -> usize {
        self.purchases
            .iter()
            .filter(|p| p.day > start && p.day <= end)
            .count()
    }

    /// Mean value of the repeat transactions on or before `end` (Gamma-Gamma input).
    pub fn mean_repeat_amount(&self, end: NaiveDate) -> Option<f64> {
        let seen = self.until(end);
        if seen.len() < 2 {
            return None;
        }
        let repeats = &seen[1..];
        Some(repeats.iter().map(|p| p.amount).sum::<f64>() / repeats.len() as f64)
    }
}

/// A parsed purchase log: customers sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PurchaseLog {
    /// One entry per customer, sorted by id.
    pub customers: Vec<CustomerHistory>,
    /// Number of input purchase lines (before same-day merging).
    pub lines: usize,
}

impl PurchaseLog {
    /// Reads a CDNOW purchase log from a file (see [`PurchaseLog::parse`]).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses a CDNOW purchase log.
    ///
    /// Accepts the four-column layout of the full cohort file
    /// (`customer yyyymmdd quantity amount`) and the five-column layout of
    /// `CDNOW_sample.txt` (`customer sample_id yyyymmdd quantity amount`), whitespace
    /// separated, detected per line by column count. A first line that does not parse
    /// (a header) is skipped; blank lines are ignored.
    pub fn parse(text: &str) -> Result<Self> {
        let mut by_customer: BTreeMap<String, BTreeMap<NaiveDate, (f64, f64)>> = BTreeMap::new();
        let mut lines = 0usize;
        for (i, line) in text.lines().enumerate() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.is_empty() {
                continue;
            }
            let parsed = parse_line(&cols).map_err(|message| Error::Parse {
                line: i + 1,
                message,
            });
            let (id, day, qty, amount) = match parsed {
                Ok(v) => v,
                Err(_) if lines == 0 && i == first_nonblank(text) => continue,
                Err(e) => return Err(e),
            };
            lines += 1;
            let slot = by_customer
                .entry(id.to_string())
                .or_default()
                .entry(day)
                .or_insert((0.0, 0.0));
            slot.0 += qty;
            slot.1 += amount;
        }
        if lines == 0 {
            return Err(Error::InvalidInput(
                "purchase log holds no purchase lines".into(),
            ));
        }
        let customers = by_customer
            .into_iter()
            .map(|(id, days)| CustomerHistory {
                id,
                purchases: days
                    .into_iter()
                    .map(|(day, (quantity, amount))| Purchase {
                        day,
                        quantity,
                        amount,
                    })
                    .collect(),
            })
            .collect();
        Ok(Self { customers, lines })
    }

    /// Earliest transaction day in the log.
    pub fn first_day(&self) -> Option<NaiveDate> {
        self.customers.iter().filter_map(|c| c.first_day()).min()
    }
}

fn first_nonblank(text: &str) -> usize {
    text.lines().position(|l| !l.trim().is_empty()).unwrap_or(0)
}

fn parse_line<'a>(cols: &[&'a str]) -> std::result::Result<(&'a str, NaiveDate, f64, f64), String> {
    let (id, date, qty, amount) = match cols.len() {
        4 => (cols[0], cols[1], cols[2], cols[3]),
        5 => (cols[0], cols[2], cols[3], cols[4]),
        n => {
            return Err(format!(
                "expected 4 columns (customer yyyymmdd quantity amount) or 5 \
                 (customer sample_id yyyymmdd quantity amount), found {n}"
            ))
        }
    };
    let day = NaiveDate::parse_from_str(date, "%Y%m%d")
        .map_err(|e| format!("date {date:?} is not yyyymmdd: {e}"))?;
    let qty: f64 = qty
        .parse()
        .map_err(|_| format!("quantity {qty:?} is not a number"))?;
    let amount: f64 = amount
        .parse()
        .map_err(|_| format!("amount {amount:?} is not a number"))?;
    Ok((id, day, qty, amount))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_layouts_and_merges_same_day() {
        let five = " 00004 0001 19970101  2   29.33\n 00004 0001 19970101  1   10.00\n 00004 0001 19970115  1 5\n";
        let log = PurchaseLog::parse(five).unwrap();
        assert_eq!(log.lines, 3);
        assert_eq!(log.customers.len(), 1);
        let c = &log.customers[0];
        assert_eq!(c.purchases.len(), 2);
        assert!((c.purchases[0].amount - 39.33).abs() < 1e-9);
        let four = "id date qty amount\n1 19970101 1 10\n1 19970108 2 20\n2 19970102 1 5\n";
        let log = PurchaseLog::parse(four).unwrap();
        assert_eq!(log.customers.len(), 2);
        let end = NaiveDate::from_ymd_opt(1997, 1, 15).unwrap();
        let rfm = log.customers[0].rfm(end).unwrap();
        assert_eq!(rfm.frequency, 1.0);
        assert!((rfm.recency - 1.0).abs() < 1e-12);
        assert!((rfm.t - 2.0).abs() < 1e-12);
        assert_eq!(log.customers[0].mean_repeat_amount(end), Some(20.0));
    }

    #[test]
    fn rejects_bad_lines_after_header() {
        let err = PurchaseLog::parse("1 19970101 1 10\n1 1997-01-02 1 10\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(PurchaseLog::parse("\n\n").is_err());
    }
}
