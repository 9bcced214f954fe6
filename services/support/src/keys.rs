//! The keys that hold one user's state, and what an erasure does to them.
//!
//! A user's conversations and handoffs live in the user's slot
//! (`partition_for("<tenant>/<user>")`), the partition that consumes the
//! user's events: the `user_erased` event deletes them in the same atomic
//! step that records the erasure, and every later write of the user (an
//! event, or a `Converse` turn) starts with the erasure guard in that same
//! slot. The handoff queue of a tenant is one index per slot
//! ([`handoff_users`]), read across the slots by `ListHandoffs`.
use mesh_store::{erasure, Op};

/// The user's conversations (hash, field = conversation id, value = the
/// conversation as JSON).
pub fn conversations(tenant: &str, user: &str) -> String {
    format!("convs:{tenant}/{user}")
}

/// The user's handed-off conversations (hash, field = conversation id,
/// value = hex of the `Handoff` message, which carries the turns).
pub fn handoffs(tenant: &str, user: &str) -> String {
    format!("handoff:{tenant}/{user}")
}

/// Users of one slot with handed-off conversations (hash, field = user id,
/// value = last handoff ms).
pub fn handoff_users(tenant: &str) -> String {
    format!("handoff-users:{tenant}")
}

/// Daily zero-result search counts of a tenant (sorted set, member = the
/// normalized query): anonymous, no user in them.
pub fn zero_results(tenant: &str) -> String {
    format!("zero:{tenant}")
}

/// The ops of a `user_erased` event, all in the user's slot: the guard
/// first (a second erasure changes nothing), the user's conversations and
/// handoffs deleted, the user out of the slot's handoff queue, and the
/// erasure recorded. Daily sentiment counts per subject and zero-result
/// query counts stay: they name no user.
pub fn erasure_ops(tenant: &str, user: &str, at_ms: i64) -> Vec<Op> {
    let member = erasure::member(tenant, user);
    vec![
        erasure::guard(&member),
        Op::Del {
            key: conversations(tenant, user),
        },
        Op::Del {
            key: handoffs(tenant, user),
        },
        Op::HDel {
            key: handoff_users(tenant),
            field: user.to_string(),
        },
        erasure::record(&member, at_ms),
    ]
}
