//! Erasure: how a service forgets a user and keeps forgetting them.
//!
//! A `user_erased` event reaches every service in the user's partition,
//! after everything the user did before it. The service deletes the user's
//! keys and [`record`]s the erasure in the partition's [`KEY`] hash, in the
//! same atomic apply. Every record of a user starts with [`guard`], so any
//! later event of that user (late, retried or replayed) changes nothing.
//! `mesh replay` keeps [`KEY`] (it is in every service's replay keeps): a
//! rebuild from offset 0 skips the user's events from the first one.
use crate::op::Op;

/// Hash, per partition slot, of the erased users: field `<tenant>/<user>`,
/// value the erasure time (Unix ms).
pub const KEY: &str = "erased";

/// `<tenant>/<user>`: the member name every service uses for a user.
pub fn member(tenant: &str, user: &str) -> String {
    format!("{tenant}/{user}")
}

/// The first op of every record of a user: skips the record's other ops
/// once the user is erased.
pub fn guard(member: &str) -> Op {
    Op::Unless {
        key: KEY.into(),
        field: member.into(),
    }
}

/// Records the erasure of `member` at `at_ms`.
pub fn record(member: &str, at_ms: i64) -> Op {
    Op::HSet {
        key: KEY.into(),
        field: member.into(),
        value: at_ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_and_record_name_the_same_field() {
        let m = member("shop", "u1");
        assert_eq!(m, "shop/u1");
        let (
            Op::Unless { key, field },
            Op::HSet {
                key: k2, field: f2, ..
            },
        ) = (guard(&m), record(&m, 5))
        else {
            panic!("unexpected ops");
        };
        assert_eq!((key.as_str(), field.as_str()), (k2.as_str(), f2.as_str()));
    }
}
