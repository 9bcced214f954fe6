//! Rule tags from a TOML file: each tag holds when all of its conditions
//! hold on the user's features at read time.
//!
//! ```toml
//! [[tag]]
//! name = "high_value"
//! all = ["monetary >= 1000"]
//! ```
//!
//! A condition is `<feature> <op> <value>` with op one of `< <= > >= == !=`;
//! numeric features are listed in [`feature_value`], and `stage` compares
//! with a stage name (`stage == at-risk`). The default file is
//! `services/profile/tags.toml`, compiled in.
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::features::Features;
use crate::lifecycle::stage_name;
use mesh_proto::profile::v1::Stage;

/// The rules shipped with the service.
pub const DEFAULT_TAGS: &str = include_str!("../tags.toml");

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Num(f64),
    Stage(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Cond {
    feature: String,
    cmp: Cmp,
    value: Value,
}

/// One tag: a name and the conditions that must all hold.
#[derive(Debug, Clone, PartialEq)]
pub struct TagRule {
    pub name: String,
    conds: Vec<Cond>,
}

/// Every tag rule, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagRules(pub Vec<TagRule>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tag: Vec<RawTag>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTag {
    name: String,
    all: Vec<String>,
}

/// A numeric feature by name (`None`: no such feature). Recency without
/// orders is infinite.
pub fn feature_value(f: &Features, name: &str) -> Option<f64> {
    Some(match name {
        "recency_days" => f.recency_days.unwrap_or(f64::INFINITY),
        "frequency" => f.frequency as f64,
        "monetary" => f.monetary,
        "aov" => f.aov,
        "orders_7d" => f.orders_7d as f64,
        "orders_30d" => f.orders_30d as f64,
        "orders_90d" => f.orders_90d as f64,
        "spend_7d" => f.spend_7d,
        "spend_30d" => f.spend_30d,
        "spend_90d" => f.spend_90d,
        "price_sensitivity" => f.price_sensitivity,
        "sessions" => f.sessions as f64,
        "mean_session_seconds" => f.mean_session_seconds,
        "funnel_step" => f.funnel_step as f64,
        "activity_score" => f.activity_score,
        "refund_rate" => f.refund_rate,
        "cancellation_rate" => f.cancellation_rate,
        "reviews" => f.reviews as f64,
        "mean_rating" => f.mean_rating,
        _ => return None,
    })
}

impl TagRules {
    /// Parses a rules file; errors name the tag and condition.
    pub fn parse(text: &str) -> Result<Self> {
        let file: File =
            toml::from_str(text).map_err(|e| Error::Config(format!("tags file: {e}")))?;
        let mut out = Vec::new();
        for t in file.tag {
            let bad = |reason: String| Error::Config(format!("tag {:?}: {reason}", t.name));
            if t.name.is_empty() {
                return Err(bad("name must not be empty".into()));
            }
            let mut conds = Vec::new();
            for c in &t.all {
                let parts: Vec<&str> = c.split_whitespace().collect();
                let [feature, op, value] = parts[..] else {
                    return Err(bad(format!(
                        "condition {c:?} is not `<feature> <op> <value>`"
                    )));
                };
                let cmp = match op {
                    "<" => Cmp::Lt,
                    "<=" => Cmp::Le,
                    ">" => Cmp::Gt,
                    ">=" => Cmp::Ge,
                    "==" => Cmp::Eq,
                    "!=" => Cmp::Ne,
                    _ => return Err(bad(format!("unknown operator {op:?} in {c:?}"))),
                };
                let value = if feature == "stage" {
                    if !crate::lifecycle::STAGES
                        .iter()
                        .any(|s| stage_name(*s) == value)
                        || !matches!(cmp, Cmp::Eq | Cmp::Ne)
                    {
                        return Err(bad(format!("{c:?}: stage takes == or != and a stage name")));
                    }
                    Value::Stage(value.to_string())
                } else {
                    if feature_value(&Features::default(), feature).is_none() {
                        return Err(bad(format!("unknown feature {feature:?} in {c:?}")));
                    }
                    Value::Num(
                        value
                            .parse()
                            .map_err(|_| bad(format!("{value:?} in {c:?} is not a number")))?,
                    )
                };
                conds.push(Cond {
                    feature: feature.to_string(),
                    cmp,
                    value,
                });
            }
            out.push(TagRule {
                name: t.name.clone(),
                conds,
            });
        }
        Ok(TagRules(out))
    }

    /// Reads a rules file.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("tags file {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// The tags that hold for a user.
    pub fn tags(&self, f: &Features, stage: Stage) -> Vec<String> {
        self.0
            .iter()
            .filter(|t| t.conds.iter().all(|c| c.holds(f, stage)))
            .map(|t| t.name.clone())
            .collect()
    }
}

impl Cond {
    fn holds(&self, f: &Features, stage: Stage) -> bool {
        match &self.value {
            Value::Stage(s) => (stage_name(stage) == s) == (self.cmp == Cmp::Eq),
            Value::Num(v) => {
                let Some(x) = feature_value(f, &self.feature) else {
                    return false;
                };
                match self.cmp {
                    Cmp::Lt => x < *v,
                    Cmp::Le => x <= *v,
                    Cmp::Gt => x > *v,
                    Cmp::Ge => x >= *v,
                    Cmp::Eq => x == *v,
                    Cmp::Ne => x != *v,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_parse_and_apply() {
        let rules = TagRules::parse(DEFAULT_TAGS).unwrap();
        let names: Vec<_> = rules.0.iter().map(|t| t.name.as_str()).collect();
        assert!(names.contains(&"high_value") && names.contains(&"window_shopper"));
        let vip = Features {
            frequency: 6,
            monetary: 1500.0,
            recency_days: Some(100.0),
            ..Default::default()
        };
        let t = rules.tags(&vip, Stage::Dormant);
        assert!(t.contains(&"high_value".to_string()), "{t:?}");
        assert!(t.contains(&"lapsed_vip".to_string()), "{t:?}");
        let browser = Features {
            sessions: 5,
            funnel_step: 2,
            ..Default::default()
        };
        assert_eq!(rules.tags(&browser, Stage::New), vec!["window_shopper"]);
    }

    #[test]
    fn bad_rules_name_the_problem() {
        let e = TagRules::parse("[[tag]]\nname = \"x\"\nall = [\"spend >= 3\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown feature \"spend\""), "{e}");
        let e = TagRules::parse("[[tag]]\nname = \"x\"\nall = [\"stage == gone\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tag \"x\""), "{e}");
        let e = TagRules::parse("[[tag]]\nname = \"x\"\nall = [\"monetary ~ 3\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown operator"), "{e}");
    }
}
