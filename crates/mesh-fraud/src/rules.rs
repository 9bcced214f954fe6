//! Rules from a TOML file, and a handle that reloads them without a restart.
//!
//! ```toml
//! [[rule]]
//! code = "CARD_TESTING"            # reason code reported with the decision
//! action = "reject"                # approve | review | reject
//! when = { all = [
//!   { feature = "instrument_failed_1h", op = ">=", value = 3 },
//!   { feature = "amount", op = "<", value = 20 },
//! ] }
//! ```
//! A condition is a comparison `{ feature, op, value }` (op one of `> >= < <= == !=`) or a
//! combination `{ all = [...] }` / `{ any = [...] }`, nested freely. Feature names are checked
//! against [`crate::features::FEATURE_NAMES`] at load time.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::{feature_index, FeatureVector};

/// What to do with an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let it through.
    Approve,
    /// Hold for a human.
    Review,
    /// Block it.
    Reject,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Approve => "approve",
            Action::Review => "review",
            Action::Reject => "reject",
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    code: Option<String>,
    action: Option<String>,
    description: Option<String>,
    when: Option<RawCond>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCond {
    feature: Option<String>,
    op: Option<String>,
    value: Option<f64>,
    all: Option<Vec<RawCond>>,
    any: Option<Vec<RawCond>>,
}

/// Comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// A compiled condition over feature indices.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `features[index] <op> value`.
    Compare {
        /// Feature index.
        index: usize,
        /// Operator.
        op: Cmp,
        /// Threshold.
        value: f64,
    },
    /// Every sub-condition holds.
    All(Vec<Condition>),
    /// At least one sub-condition holds.
    Any(Vec<Condition>),
}

impl Condition {
    /// Evaluate on a feature vector.
    pub fn holds(&self, f: &[f64]) -> bool {
        match self {
            Condition::Compare { index, op, value } => {
                let x = f[*index];
                match op {
                    Cmp::Gt => x > *value,
                    Cmp::Ge => x >= *value,
                    Cmp::Lt => x < *value,
                    Cmp::Le => x <= *value,
                    Cmp::Eq => x == *value,
                    Cmp::Ne => x != *value,
                }
            }
            Condition::All(cs) => cs.iter().all(|c| c.holds(f)),
            Condition::Any(cs) => cs.iter().any(|c| c.holds(f)),
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Reason code.
    pub code: String,
    /// Action when the condition holds.
    pub action: Action,
    /// Free text.
    pub description: String,
    /// Condition.
    pub when: Condition,
}

/// A rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHit {
    /// Reason code.
    pub code: String,
    /// The rule's action.
    pub action: Action,
}

/// A validated set of rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSet {
    /// Rules in file order.
    pub rules: Vec<Rule>,
}

/// The rules shipped with the crate (`rules/default.toml`).
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

fn invalid(rule: &str, field: &str, message: impl Into<String>) -> Error {
    Error::InvalidRule {
        rule: rule.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

fn compile(rule: &str, path: &str, c: RawCond) -> Result<Condition> {
    let is_all = c.all.is_some();
    match (c.feature, c.all, c.any) {
        (Some(name), None, None) => {
            let index = feature_index(&name).ok_or_else(|| {
                invalid(
                    rule,
                    &format!("{path}.feature"),
                    format!("unknown feature `{name}` (see features::FEATURE_NAMES)"),
                )
            })?;
            let op = match c.op.as_deref() {
                Some(">") => Cmp::Gt,
                Some(">=") => Cmp::Ge,
                Some("<") => Cmp::Lt,
                Some("<=") => Cmp::Le,
                Some("==") => Cmp::Eq,
                Some("!=") => Cmp::Ne,
                other => {
                    return Err(invalid(
                        rule,
                        &format!("{path}.op"),
                        format!("expected one of > >= < <= == !=, got {other:?}"),
                    ))
                }
            };
            let value = c.value.ok_or_else(|| {
                invalid(rule, &format!("{path}.value"), "missing numeric threshold")
            })?;
            Ok(Condition::Compare { index, op, value })
        }
        (None, Some(cs), None) | (None, None, Some(cs)) if !cs.is_empty() => {
            let key = if is_all { "all" } else { "any" };
            let compiled = cs
                .into_iter()
                .enumerate()
                .map(|(i, sub)| compile(rule, &format!("{path}.{key}[{i}]"), sub))
                .collect::<Result<Vec<_>>>()?;
            Ok(if is_all {
                Condition::All(compiled)
            } else {
                Condition::Any(compiled)
            })
        }
        _ => Err(invalid(
            rule,
            path,
            "expected exactly one of `feature` (with op and value), a non-empty `all` or a non-empty `any`",
        )),
    }
}

impl RuleSet {
    /// Parse and validate TOML text; `origin` names the source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let raw: RawFile = toml::from_str(text).map_err(|e| Error::RulesParse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let mut rules = Vec::with_capacity(raw.rule.len());
        let mut seen = std::collections::HashSet::new();
        for (i, r) in raw.rule.into_iter().enumerate() {
            let code = r
                .code
                .filter(|c| !c.trim().is_empty())
                .ok_or_else(|| invalid(&format!("#{i}"), "code", "missing reason code"))?;
            if !seen.insert(code.clone()) {
                return Err(invalid(&code, "code", "duplicate reason code"));
            }
            let action = match r.action.as_deref() {
                Some("approve") => Action::Approve,
                Some("review") => Action::Review,
                Some("reject") => Action::Reject,
                other => {
                    return Err(invalid(
                        &code,
                        "action",
                        format!("expected approve, review or reject, got {other:?}"),
                    ))
                }
            };
            let when = r
                .when
                .ok_or_else(|| invalid(&code, "when", "missing condition"))?;
            let when = compile(&code, "when", when)?;
            rules.push(Rule {
                code,
                action,
                description: r.description.unwrap_or_default(),
                when,
            });
        }
        Ok(RuleSet { rules })
    }

    /// Read and validate a rules file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// The rules shipped with the crate.
    pub fn default_rules() -> Self {
        Self::from_toml_str(DEFAULT_RULES, "rules/default.toml")
            .expect("shipped default rules are valid (checked by a unit test)")
    }

    /// Rules that match, in file order.
    pub fn evaluate(&self, f: &FeatureVector) -> Vec<RuleHit> {
        self.rules
            .iter()
            .filter(|r| r.when.holds(&f.0))
            .map(|r| RuleHit {
                code: r.code.clone(),
                action: r.action,
            })
            .collect()
    }

    /// A score from rules alone: the strongest action (reject 1, review 0.5), plus a small
    /// bonus per extra hit so more evidence ranks higher.
    pub fn score(hits: &[RuleHit]) -> f64 {
        let strongest = hits.iter().map(|h| h.action).max();
        let base = match strongest {
            Some(Action::Reject) => 1.0,
            Some(Action::Review) => 0.5,
            _ => 0.0,
        };
        base + 0.01 * hits.len() as f64
    }
}

fn content_hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Rules shared by request handlers, swapped atomically on reload.
///
/// Readers take an `Arc<RuleSet>` snapshot ([`RulesHandle::current`]); a reload builds the new
/// set completely before swapping, so a bad file never replaces good rules.
#[derive(Debug)]
pub struct RulesHandle {
    current: RwLock<Arc<RuleSet>>,
    loaded_hash: Mutex<Option<u64>>,
}

impl RulesHandle {
    /// A handle over an already built set (not tied to a file yet).
    pub fn new(rules: RuleSet) -> Self {
        Self {
            current: RwLock::new(Arc::new(rules)),
            loaded_hash: Mutex::new(None),
        }
    }

    /// Load a rules file.
    pub fn load(path: &Path) -> Result<Self> {
        let handle = Self::new(RuleSet::default());
        handle.reload_if_changed(path)?;
        Ok(handle)
    }

    /// Snapshot of the current rules.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-read `path`; swap in its rules if its content changed and is valid.
    ///
    /// Returns `Ok(true)` when new rules were installed, `Ok(false)` when the content is the one
    /// already loaded. On an invalid file the old rules stay in place and the error names the
    /// rule and field.
    pub fn reload_if_changed(&self, path: &Path) -> Result<bool> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let hash = content_hash(&text);
        let mut loaded = self
            .loaded_hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *loaded == Some(hash) {
            return Ok(false);
        }
        let rules = RuleSet::from_toml_str(&text, &path.display().to_string())?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(rules);
        *loaded = Some(hash);
        Ok(true)
    }
}
