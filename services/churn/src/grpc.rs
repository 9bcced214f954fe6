//! `ChurnService`: conversion only; the work is in [`crate::engine`].
use std::sync::Arc;

use mesh_churn::retention::IntervalMethod;
use mesh_proto::churn::v1 as pb;
use mesh_proto::churn::v1::churn_service_server::ChurnService;
use tonic::{Request, Response, Status};

use crate::engine::{method_name, Churn};
use crate::error::{to_status, Error};
use crate::model::Model;

pub struct ChurnGrpc {
    pub churn: Arc<Churn>,
}

/// Longest tenant or user id: ingest accepts none over 128 bytes, so a
/// longer one names nobody and is refused before it reaches the store.
const MAX_ID: usize = 256;

fn invalid(field: &'static str, reason: impl Into<String>) -> Status {
    to_status(Error::InvalidArgument {
        field,
        reason: reason.into(),
    })
}

/// Page token: the last listed risk's bits and member.
fn encode_token(risk: f64, member: &str) -> String {
    format!("{:016x}:{member}", risk.to_bits())
}

fn decode_token(token: &str) -> Option<(f64, String)> {
    let (bits, member) = token.split_once(':')?;
    let risk = f64::from_bits(u64::from_str_radix(bits, 16).ok()?);
    (bits.len() == 16 && (0.0..=1.0).contains(&risk)).then(|| (risk, member.to_string()))
}

/// Model parameters and alert settings as the wire shows them.
pub fn model_info(m: &Model, alert: &mesh_churn::scoring::AlertConfig) -> pb::ModelInfo {
    pb::ModelInfo {
        r: m.bgnbd.r,
        alpha: m.bgnbd.alpha,
        a: m.bgnbd.a,
        b: m.bgnbd.b,
        gg_p: m.gamma_gamma.p,
        gg_q: m.gamma_gamma.q,
        gg_gamma: m.gamma_gamma.gamma,
        version: m.version.clone(),
        fitted_at_ms: m.fitted_at.timestamp_millis(),
        source: m.source.name().into(),
        customers: m.customers as u64,
        threshold: alert.threshold,
        rearm_below: alert.rearm_below,
        horizon_weeks: alert.horizon_weeks,
        ..Default::default()
    }
}

/// Parses a `RetentionReport` method name ("" = newcombe).
pub fn parse_method(method: &str) -> Result<IntervalMethod, Error> {
    match method {
        "" | "newcombe" => Ok(IntervalMethod::Newcombe),
        "wald" => Ok(IntervalMethod::Wald),
        other => Err(Error::InvalidArgument {
            field: "method",
            reason: format!("expected \"newcombe\" or \"wald\", got {other:?}"),
        }),
    }
}

/// A list's tenant: empty (every tenant's) or an id of at most `MAX_ID`
/// bytes.
fn tenant_filter(tenant: &str) -> Result<(), Status> {
    if tenant.len() > MAX_ID {
        return Err(invalid(
            "tenant_id",
            format!("is {} bytes; at most {MAX_ID}", tenant.len()),
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl ChurnService for ChurnGrpc {
    async fn get_churn_risk(
        &self,
        request: Request<pb::GetChurnRiskRequest>,
    ) -> Result<Response<pb::ChurnRisk>, Status> {
        let r = request.into_inner();
        for (field, v) in [("tenant_id", &r.tenant_id), ("user_id", &r.user_id)] {
            if v.is_empty() {
                return Err(invalid(field, "is required"));
            }
            if v.len() > MAX_ID {
                return Err(invalid(
                    field,
                    format!("is {} bytes; at most {MAX_ID}", v.len()),
                ));
            }
        }
        if !(r.weeks >= 0.0 && r.weeks.is_finite()) {
            return Err(invalid("weeks", "must be a finite number >= 0"));
        }
        let c = &self.churn;
        let s = c
            .summary(&r.tenant_id, &r.user_id)
            .await
            .map_err(to_status)?
            .ok_or_else(|| {
                to_status(Error::NotFound(format!(
                    "no order seen for user {}/{}",
                    r.tenant_id, r.user_id
                )))
            })?;
        let a = c.assess(&s, c.now(), r.weeks).map_err(to_status)?;
        Ok(Response::new(pb::ChurnRisk {
            tenant_id: r.tenant_id,
            user_id: r.user_id,
            p_alive: a.p_alive,
            churn_probability: a.churn.probability,
            horizon_weeks: a.churn.horizon_weeks,
            model: a.churn.model.clone(),
            bgnbd_churn_probability: a.risk,
            last_active_ms: s.last_active_ms,
            expected_purchases: a.expected_purchases,
            weeks: a.weeks,
            clv: a.clv,
            reasons: a.reasons,
            frequency: s.frequency(),
            recency_weeks: a.rfm.recency,
            age_weeks: a.rfm.t,
            orders: s.orders,
            spend: s.spend,
            alerted: s.alerted,
            arm: s.arm.clone(),
            at_ms: a.at.timestamp_millis(),
            model_version: c.model.version.clone(),
            supervised_churn_probability: a.supervised.as_ref().map(|(p, _)| *p),
            supervised_model_version: a
                .supervised
                .as_ref()
                .map(|(_, m)| m.report.version.clone())
                .unwrap_or_default(),
            supervised_horizon_weeks: a
                .supervised
                .as_ref()
                .map_or(0.0, |(_, m)| f64::from(m.report.horizon_weeks)),
        }))
    }

    async fn list_at_risk(
        &self,
        request: Request<pb::ListAtRiskRequest>,
    ) -> Result<Response<pb::ListAtRiskResponse>, Status> {
        let r = request.into_inner();
        tenant_filter(&r.tenant_id)?;
        if !(0.0..=1.0).contains(&r.threshold) {
            return Err(invalid("threshold", "must be in [0, 1]"));
        }
        let threshold = if r.threshold > 0.0 {
            r.threshold
        } else {
            self.churn.scoring.alert.threshold
        };
        let after = if r.page_token.is_empty() {
            None
        } else {
            Some(decode_token(&r.page_token).ok_or_else(|| {
                invalid("page_token", "not a token from a previous ListAtRisk page")
            })?)
        };
        let size = match r.page_size {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let (users, next) = self
            .churn
            .at_risk(threshold, after, size, &r.tenant_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListAtRiskResponse {
            users,
            next_page_token: next
                .map(|(risk, m)| encode_token(risk, &m))
                .unwrap_or_default(),
        }))
    }

    async fn get_model_info(
        &self,
        _request: Request<pb::GetModelInfoRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        self.churn.refresh_supervised().await.map_err(to_status)?;
        let mut info = model_info(&self.churn.model, &self.churn.scoring.alert);
        if let Some(m) = self.churn.supervised() {
            let r = &m.report;
            info.supervised_version = r.version.clone();
            info.supervised_kind = match r.kind {
                mesh_churn::supervised::ModelKind::LogisticRegression => "logistic_regression",
                mesh_churn::supervised::ModelKind::RandomForest => "random_forest",
            }
            .into();
            info.supervised_horizon_weeks = f64::from(r.horizon_weeks);
            info.supervised_validation_auc = r.validation_auc;
            info.supervised_validation_brier = r.validation_brier;
            info.supervised_train_rows = r.train_rows as u64;
            info.supervised_hybrid = r.hybrid;
            info.supervised_behaviour = r.behaviour;
            info.supervised_purchase_only_auc = r.purchase_only_validation_auc;
            info.ranking_model = format!("supervised:{}", r.version);
        } else {
            info.ranking_model = crate::engine::BGNBD.into();
        }
        Ok(Response::new(info))
    }

    async fn retention_report(
        &self,
        request: Request<pb::RetentionReportRequest>,
    ) -> Result<Response<pb::RetentionReportResponse>, Status> {
        let r = request.into_inner();
        tenant_filter(&r.tenant_id)?;
        let confidence = if r.confidence == 0.0 {
            0.95
        } else {
            r.confidence
        };
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(invalid("confidence", "must be in (0, 1)"));
        }
        let method = parse_method(&r.method).map_err(to_status)?;
        let mut out = self
            .churn
            .retention_report(confidence, method, &r.tenant_id)
            .await
            .map_err(to_status)?;
        out.method = method_name(method).into();
        Ok(Response::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_junk() {
        let t = encode_token(0.8125, "shop/u-1:x");
        assert_eq!(decode_token(&t), Some((0.8125, "shop/u-1:x".into())));
        assert_eq!(decode_token("nonsense"), None);
        assert_eq!(decode_token(&encode_token(2.0, "a/b")), None);
    }
}
