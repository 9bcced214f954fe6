//! Config from environment variables, read through [`Env`] so tests pass a
//! map instead of mutating the process environment.
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use crate::{Error, Result};

/// A source of `MESH_*` variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    /// Explicit variables (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// A variable, `None` when unset or blank.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.vars
            .get(var)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A string with a default.
    pub fn string(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_string()
    }

    /// A parsed value with a default; a bad value is an error naming the
    /// variable and what was expected.
    pub fn parse<T: FromStr>(&self, var: &str, default: T, expected: &str) -> Result<T> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| Error::Config {
                var: var.to_string(),
                value: v.to_string(),
                reason: format!("expected {expected}"),
            }),
        }
    }

    /// A duration in milliseconds.
    pub fn millis(&self, var: &str, default: Duration) -> Result<Duration> {
        self.parse::<u64>(
            var,
            default.as_millis() as u64,
            "a whole number of milliseconds",
        )
        .map(Duration::from_millis)
    }

    /// A listen address like `127.0.0.1:50051`.
    pub fn addr(&self, var: &str, default: &str) -> Result<std::net::SocketAddr> {
        let v = self.string(var, default);
        v.parse().map_err(|_| Error::Config {
            var: var.to_string(),
            value: v.clone(),
            reason: "expected host:port with a numeric IP, e.g. 127.0.0.1:50051".into(),
        })
    }

    /// A positive integer.
    pub fn positive(&self, var: &str, default: i32) -> Result<i32> {
        let v = self.parse::<i32>(var, default, "a positive whole number")?;
        if v <= 0 {
            return Err(Error::Config {
                var: var.into(),
                value: v.to_string(),
                reason: "must be > 0".into(),
            });
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_variable() {
        let env = Env::from_pairs([("MESH_PARTITIONS", "many"), ("MESH_GRPC_ADDR", "localhost")]);
        let e = env.positive("MESH_PARTITIONS", 8).unwrap_err().to_string();
        assert!(e.contains("MESH_PARTITIONS") && e.contains("many"), "{e}");
        let e = env
            .addr("MESH_GRPC_ADDR", "127.0.0.1:1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("MESH_GRPC_ADDR"), "{e}");
        assert_eq!(env.positive("MESH_OTHER", 8).unwrap(), 8);
    }
}
