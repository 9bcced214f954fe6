#!/usr/bin/env python3
"""Writes the Grafana dashboards under deploy/grafana/dashboards/.

The dashboards are data; this script is their source so panels stay
consistent (one datasource uid, one layout). Run it after changing a panel:
    python3 scripts/gen-dashboards.py
tests/ops_metrics.rs checks every metric a dashboard references is exported.
"""
import json
import os

DS = {"type": "prometheus", "uid": "prometheus"}
OUT = os.path.join(os.path.dirname(__file__), "..", "deploy", "grafana", "dashboards")


def p99(metric, by, extra=""):
    sel = "{" + extra + "}" if extra else ""
    return f"histogram_quantile(0.99, sum by (le, {by}) (rate({metric}_bucket{sel}[5m])))"


def panel(title, exprs, unit="short", kind="timeseries", legend="{{__name__}}"):
    targets = []
    for i, e in enumerate(exprs):
        if isinstance(e, tuple):
            e, leg = e
        else:
            leg = legend
        targets.append({"refId": chr(65 + i), "expr": e, "legendFormat": leg, "datasource": DS})
    return {"type": kind, "title": title, "datasource": DS, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "options": {}}


def dashboard(uid, title, panels, tags):
    out = []
    for i, p in enumerate(panels):
        p = dict(p)
        p["id"] = i + 1
        p["gridPos"] = {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8}
        out.append(p)
    return {"uid": uid, "title": title, "tags": ["mesh"] + tags, "timezone": "utc",
            "schemaVersion": 39, "version": 1, "refresh": "10s",
            "time": {"from": "now-1h", "to": "now"}, "panels": out}


def grpc_panels(package):
    sel = f'method=~"/{package}.*"'
    return [
        panel("gRPC calls by method and code", [(f"sum by (method, code) (rate(mesh_grpc_requests_total{{{sel}}}[5m]))", "{{method}} {{code}}")], "reqps"),
        panel("gRPC p99 latency by method", [(p99("mesh_grpc_request_seconds", "method", sel), "{{method}}")], "s"),
    ]


def consumer_panels(group):
    sel = f'group="{group}"'
    return [
        panel("Records consumed by topic", [(f"sum by (topic) (rate(mesh_bus_consumed_total{{{sel}}}[5m]))", "{{topic}}")], "ops"),
        panel("Consumer lag by partition", [(f"sum by (topic, partition) (mesh_consumer_lag{{{sel}}})", "{{topic}}/{{partition}}")]),
        panel("Event time to applied effect, p99", [(p99("mesh_bus_end_to_end_seconds", "group", sel), "{{group}}")], "s"),
        panel("Batch handling p99 and handler errors", [
            (p99("mesh_bus_batch_seconds", "group", sel), "p99 batch"),
            (f"sum(rate(mesh_bus_handler_errors_total{{{sel}}}[5m]))", "errors/s")], "s"),
    ]


DASHBOARDS = {
    "overview": dashboard("mesh-overview", "Mesh overview", [
        panel("Events ingested / rejected", [
            ("sum(rate(mesh_ingest_accepted_total[5m]))", "accepted"),
            ("sum(rate(mesh_ingest_rejected_total[5m]))", "rejected"),
            ("sum(rate(mesh_ingest_dead_lettered_total[5m]))", "dead-lettered")], "ops"),
        panel("Records consumed by group", [("sum by (group) (rate(mesh_bus_consumed_total[5m]))", "{{group}}")], "ops"),
        panel("Consumer lag by group", [("sum by (group) (mesh_consumer_lag)", "{{group}}")]),
        panel("Records written by topic", [("sum by (topic) (rate(mesh_bus_produced_total[5m]))", "{{topic}}")], "ops"),
        panel("Event to effect p99 by group", [(p99("mesh_bus_end_to_end_seconds", "group"), "{{group}}")], "s"),
        panel("Handler errors by group", [("sum by (group) (rate(mesh_bus_handler_errors_total[5m]))", "{{group}}")], "ops"),
        panel("gRPC p99 by method", [(p99("mesh_grpc_request_seconds", "method"), "{{method}}")], "s"),
        panel("gRPC errors by code", [('sum by (code) (rate(mesh_grpc_requests_total{code!="0"}[5m]))', "{{code}}")], "reqps"),
        panel("Calls refused by the guard, by reason", [("sum by (reason) (rate(mesh_auth_rejected_total[5m]))", "{{reason}}")], "reqps"),
        panel("State store round trip p99", [(p99("mesh_store_ping_seconds", "backend"), "{{backend}}")], "s"),
        panel("Fraud decisions", [("sum by (action) (rate(mesh_fraud_decisions_total[5m]))", "{{action}}")], "ops"),
    ], ["overview"]),
    "ingest": dashboard("mesh-ingest", "Ingest", [
        panel("Accepted by front door", [("sum by (origin) (rate(mesh_ingest_accepted_total[5m]))", "{{origin}}")], "ops"),
        panel("Rejected, dead-lettered, duplicates", [
            ("sum by (origin) (rate(mesh_ingest_rejected_total[5m]))", "rejected {{origin}}"),
            ("sum by (origin) (rate(mesh_ingest_dead_lettered_total[5m]))", "dead-lettered {{origin}}"),
            ("sum by (origin) (rate(mesh_ingest_duplicates_total[5m]))", "duplicates {{origin}}")], "ops"),
        panel("Produce outcomes by topic", [("sum by (topic, outcome) (rate(mesh_bus_produced_total[5m]))", "{{topic}} {{outcome}}")], "ops"),
        panel("Log end per topic", [("sum by (topic) (mesh_topic_high_watermark)", "{{topic}}")]),
    ] + grpc_panels("mesh.ingest.v1"), ["service"]),
    "profile": dashboard("mesh-profile", "Profile", consumer_panels("mesh-profile") + grpc_panels("mesh.profile.v1"), ["service"]),
    "churn": dashboard("mesh-churn", "Churn", [
        panel("Order records applied", [("rate(mesh_churn_records_applied_total[5m])", "applied")], "ops"),
        panel("Alerts by kind", [("sum by (kind) (rate(mesh_churn_alerts_total[5m]))", "{{kind}}")], "ops"),
        panel("Users re-scored by sweeps", [("rate(mesh_churn_swept_users_total[5m])", "swept")], "ops"),
        panel("Sweep duration p99", [(p99("mesh_churn_sweep_seconds", "job"), "p99")], "s"),
    ] + consumer_panels("mesh-churn") + grpc_panels("mesh.churn.v1"), ["service"]),
    "recommend": dashboard("mesh-recommend", "Recommend", [
        panel("Interactions by kind", [("sum by (kind) (rate(mesh_recommend_interactions_total[5m]))", "{{kind}}")], "ops"),
    ] + consumer_panels("mesh-recommend") + grpc_panels("mesh.recommend.v1"), ["service"]),
    "fraud": dashboard("mesh-fraud", "Fraud", [
        panel("Decisions by action and path", [("sum by (action, path) (rate(mesh_fraud_decisions_total[5m]))", "{{path}} {{action}}")], "ops"),
        panel("Scoring p99 by path", [(p99("mesh_fraud_score_seconds", "path"), "{{path}}")], "s"),
    ] + consumer_panels("mesh-fraud") + grpc_panels("mesh.fraud.v1"), ["service"]),
    "logistics": dashboard("mesh-logistics", "Logistics", [
        panel("Order events by kind", [("sum by (kind) (rate(mesh_logistics_events_total[5m]))", "{{kind}}")], "ops"),
        panel("Plans by method and outcome", [("sum by (method, outcome) (rate(mesh_logistics_plans_total[5m]))", "{{method}} {{outcome}}")], "ops"),
        panel("Plan time p99 by method", [(p99("mesh_logistics_plan_seconds", "method"), "{{method}}")], "s"),
    ] + consumer_panels("mesh-logistics") + grpc_panels("mesh.logistics.v1"), ["service"]),
    "engage": dashboard("mesh-engage", "Engage", [
        panel("Offer decisions by outcome", [("sum by (outcome) (rate(mesh_engage_offer_decisions_total[5m]))", "{{outcome}}")], "ops"),
        panel("Offers sent by offer", [('sum by (offer) (rate(mesh_engage_offer_decisions_total{outcome="offer"}[5m]))', "{{offer}}")], "ops"),
        panel("Offer responses by kind and source", [("sum by (kind, source) (rate(mesh_engage_responses_total[5m]))", "{{kind}} {{source}}")], "ops"),
        panel("Creative rankings by model", [("sum by (model) (rate(mesh_engage_creative_scores_total[5m]))", "{{model}}")], "ops"),
        panel("Ad impressions and clicks reported", [("sum by (kind) (rate(mesh_engage_ad_deliveries_total[15m]))", "{{kind}}")], "ops"),
        panel("Reported ad click-through rate", [(
            'sum(rate(mesh_engage_ad_deliveries_total{kind="clicks"}[1h])) / sum(rate(mesh_engage_ad_deliveries_total{kind="impressions"}[1h]))', "CTR")], "percentunit"),
        panel("CTR model refits by outcome", [("sum by (outcome) (rate(mesh_engage_ctr_fits_total[15m]))", "{{outcome}}")], "ops"),
        panel("Ad budget allocated, spend and revenue", [("sum by (kind) (rate(mesh_engage_ad_money_total[15m]))", "{{kind}}")]),
        panel("Reported return on ad spend", [(
            'sum(rate(mesh_engage_ad_money_total{kind="revenue"}[1h])) / sum(rate(mesh_engage_ad_money_total{kind="spend"}[1h]))', "ROAS")]),
    ] + consumer_panels("mesh-engage") + grpc_panels("mesh.engage.v1"), ["service"]),
    "support": dashboard("mesh-support", "Support", [
        panel("Texts analysed by source and sentiment", [("sum by (source, sentiment) (rate(mesh_support_feedback_total[5m]))", "{{source}} {{sentiment}}")], "ops"),
        panel("Assistant turns by outcome", [("sum by (outcome) (rate(mesh_support_assistant_turns_total[5m]))", "{{outcome}}")], "ops"),
        panel("Hand-off share of assistant turns", [(
            'sum(rate(mesh_support_assistant_turns_total{outcome="handoff"}[1h])) / sum(rate(mesh_support_assistant_turns_total[1h]))', "handoff share")], "percentunit"),
    ] + consumer_panels("mesh-support") + grpc_panels("mesh.support.v1"), ["service"]),
    "models": dashboard("mesh-models", "Models", [
        panel("Fraud: share of orders not approved", [(
            'sum(rate(mesh_fraud_decisions_total{action!="ACTION_APPROVE"}[15m])) / sum(rate(mesh_fraud_decisions_total[15m]))', "review+reject share")], "percentunit"),
        panel("Fraud: decisions by action", [("sum by (action) (rate(mesh_fraud_decisions_total[15m]))", "{{action}}")], "ops"),
        panel("Churn: alerts fired per applied order", [(
            'sum(rate(mesh_churn_alerts_total{kind="fired"}[1h])) / sum(rate(mesh_churn_records_applied_total[1h]))', "alerts per order")]),
        panel("Recommend: interactions by kind", [("sum by (kind) (rate(mesh_recommend_interactions_total[15m]))", "{{kind}}")], "ops"),
        panel("Logistics: plans by outcome", [("sum by (outcome) (rate(mesh_logistics_plans_total[15m]))", "{{outcome}}")], "ops"),
        panel("Engage: conversions per offer sent", [(
            'sum(rate(mesh_engage_responses_total{kind="conversion"}[1h])) / sum(rate(mesh_engage_offer_decisions_total{outcome="offer"}[1h]))', "conversions per offer")]),
        panel("Engage: reported ad CTR and ROAS", [
            ('sum(rate(mesh_engage_ad_deliveries_total{kind="clicks"}[1h])) / sum(rate(mesh_engage_ad_deliveries_total{kind="impressions"}[1h]))', "CTR"),
            ('sum(rate(mesh_engage_ad_money_total{kind="revenue"}[1h])) / sum(rate(mesh_engage_ad_money_total{kind="spend"}[1h]))', "ROAS")]),
    ], ["models"]),
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, d in DASHBOARDS.items():
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(d, f, indent=1)
            f.write("\n")
    print(f"wrote {len(DASHBOARDS)} dashboards to {os.path.normpath(OUT)}")
