//! The buyer as profile sees it, asked over gRPC: account age, order
//! history and lifecycle stage, attached to every decision
//! (`Decision.buyer`). Without an answer the decision is made as before and
//! says so (`Decision.degraded`).
use std::collections::HashMap;

use mesh_proto::fraud::v1 as pb;
use mesh_proto::profile::v1 as ppb;
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
use mesh_runtime::peers::Peer;

const DAY_MS: f64 = 86_400_000.0;
/// Accounts younger than this placing their first order get `NEW_ACCOUNT`.
const NEW_ACCOUNT_DAYS: f64 = 1.0;

/// Profile's answer for the buyer of an order placed at `order_ms`.
pub fn context(p: &ppb::Profile, order_ms: i64) -> pb::BuyerContext {
    pb::BuyerContext {
        known: true,
        account_age_days: ((order_ms - p.first_seen_ms).max(0) as f64) / DAY_MS,
        orders: p.orders,
        spend: p.spend,
        refund_rate: p.refund_rate,
        stage: p.stage().as_str_name().to_string(),
    }
}

/// A buyer profile has never seen.
pub fn unknown() -> pb::BuyerContext {
    pb::BuyerContext {
        known: false,
        stage: ppb::Stage::New.as_str_name().to_string(),
        ..Default::default()
    }
}

/// Adds the buyer to a decision, with `NEW_ACCOUNT` for the first order of
/// an account younger than a day.
pub fn attach(d: &mut pb::Decision, buyer: pb::BuyerContext) {
    if buyer.account_age_days < NEW_ACCOUNT_DAYS && buyer.orders <= 1 {
        d.reasons.push(pb::Reason {
            code: "NEW_ACCOUNT".into(),
            text: "first order of an account profile has known for less than a day".into(),
        });
    }
    d.buyer = Some(buyer);
}

/// Marks a decision made without profile.
pub fn degrade(d: &mut pb::Decision, reason: &str) {
    mesh_runtime::peers::degraded("fraud", "profile");
    d.degraded
        .push(format!("{reason} (decided without buyer history)"));
}

/// Profiles of `users` (`(tenant, user)`) in one call; users profile does
/// not know are absent. `Err(reason)` when profile did not answer.
pub async fn fetch(
    peer: &Peer,
    users: &[(String, String)],
) -> Result<HashMap<(String, String), ppb::Profile>, String> {
    let mut out = HashMap::new();
    // The RPC takes at most 500 users.
    for chunk in users.chunks(500) {
        let req = ppb::BatchGetProfilesRequest {
            tenant_id: String::new(),
            users: chunk
                .iter()
                .map(|(t, u)| ppb::GetProfileRequest {
                    tenant_id: t.clone(),
                    user_id: u.clone(),
                })
                .collect(),
        };
        let res = peer
            .call("BatchGetProfiles", req, |ch, r| async move {
                ProfileServiceClient::new(ch).batch_get_profiles(r).await
            })
            .await
            .map_err(|e| e.reason())?;
        for p in res.profiles {
            out.insert((p.tenant_id.clone(), p.user_id.clone()), p);
        }
    }
    Ok(out)
}

/// Attaches profile's answer (or the degraded mark) to each decision.
pub async fn enrich(peer: Option<&Peer>, decisions: &mut [&mut pb::Decision]) {
    let Some(peer) = peer else {
        return;
    };
    let mut users: Vec<(String, String)> = decisions
        .iter()
        .map(|d| (d.tenant_id.clone(), d.user_id.clone()))
        .collect();
    users.sort();
    users.dedup();
    match fetch(peer, &users).await {
        Ok(profiles) => {
            for d in decisions.iter_mut() {
                let buyer = profiles
                    .get(&(d.tenant_id.clone(), d.user_id.clone()))
                    .map(|p| context(p, d.occurred_at_ms))
                    .unwrap_or_else(unknown);
                attach(d, buyer);
            }
        }
        Err(reason) => {
            for d in decisions.iter_mut() {
                degrade(d, &reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_young_account_first_order_is_flagged_and_an_old_one_is_not() {
        let day = 86_400_000;
        let p = ppb::Profile {
            first_seen_ms: 10 * day,
            orders: 1,
            stage: ppb::Stage::Activated as i32,
            ..Default::default()
        };
        let mut d = pb::Decision::default();
        attach(&mut d, context(&p, 10 * day + 3_600_000));
        assert!(d.reasons.iter().any(|r| r.code == "NEW_ACCOUNT"));
        let b = d.buyer.unwrap();
        assert!((b.account_age_days - 1.0 / 24.0).abs() < 1e-9);
        assert_eq!(b.stage, "STAGE_ACTIVATED");
        let mut d = pb::Decision::default();
        attach(&mut d, context(&p, 40 * day));
        assert!(d.reasons.is_empty());
        // An order timestamped before the first event (clock skew) is age 0,
        // never negative.
        assert_eq!(context(&p, 0).account_age_days, 0.0);
    }
}
