//! Readers for TSPLIB/CVRPLIB `.vrp` (incl. the DIMACS VRPTW variant), Solomon `.txt` and
//! CVRPLIB `.sol` files.

use crate::error::{Error, Result};
use crate::instance::{BestKnown, DistanceConvention, Instance, Objective};
use std::collections::HashMap;
use std::path::Path;

/// Published best known solutions (vehicles, distance) for the Solomon instances we ship
/// tests for; Solomon files carry no such line themselves.
const SOLOMON_BEST_KNOWN: &[(&str, usize, f64)] = &[
    ("C101", 10, 828.94),
    ("R101", 19, 1650.80),
    ("RC101", 14, 1696.95),
];

/// Reads an instance, choosing the parser from the content (`NODE_COORD_SECTION` means
/// TSPLIB/CVRPLIB, a `CUSTOMER` table means Solomon). For `.vrp` files without a best known
/// value in their COMMENT, a `.sol` file beside them supplies it.
pub fn load(path: &Path) -> Result<Instance> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file = path.display().to_string();
    let mut inst = if text.contains("NODE_COORD_SECTION") {
        parse_tsplib(&text, &file)?
    } else {
        parse_solomon(&text, &file)?
    };
    if inst.best_known.is_none() {
        let sol_path = path.with_extension("sol");
        if sol_path.is_file() && sol_path != path {
            let sol = std::fs::read_to_string(&sol_path).map_err(|source| Error::Io {
                path: sol_path.clone(),
                source,
            })?;
            let (routes, cost) = parse_sol(&sol, &sol_path.display().to_string())?;
            if let Some(cost) = cost {
                inst.best_known = Some(BestKnown {
                    cost,
                    vehicles: Some(routes.iter().filter(|r| !r.is_empty()).count()),
                });
            }
        }
    }
    Ok(inst)
}

fn perr(file: &str, line: usize, message: impl Into<String>) -> Error {
    Error::Parse {
        file: file.to_string(),
        line,
        message: message.into(),
    }
}

fn num<T: std::str::FromStr>(tok: &str, file: &str, line: usize, what: &str) -> Result<T> {
    tok.parse()
        .map_err(|_| perr(file, line, format!("expected {what}, found {tok:?}")))
}

/// Extracts the number after `key` in a free-text COMMENT, e.g. `Optimal value: 784`.
fn number_after(text: &str, key: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find(&key.to_ascii_lowercase())? + key.len();
    let rest = text[at..].trim_start_matches([':', ' ', '=']);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].trim_end_matches('.').parse().ok()
}

/// Parses TSPLIB / CVRPLIB text. With a `TIME_WINDOW_SECTION` the DIMACS convention
/// (distances truncated to one decimal) applies, otherwise TSPLIB rounding.
pub fn parse_tsplib(text: &str, file: &str) -> Result<Instance> {
    let mut header: HashMap<String, String> = HashMap::new();
    let mut coords: Vec<(usize, f64, f64)> = Vec::new();
    let mut demand: HashMap<usize, i64> = HashMap::new();
    let mut windows: HashMap<usize, (f64, f64)> = HashMap::new();
    let mut service: HashMap<usize, f64> = HashMap::new();
    let mut depots: Vec<usize> = Vec::new();
    let mut section = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if line == "EOF" {
            break;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        if first.ends_with("_SECTION") {
            section = first.to_string();
            continue;
        }
        if section.is_empty()
            || first
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
        {
            let (key, value) = line.split_once(':').ok_or_else(|| {
                perr(
                    file,
                    line_no,
                    format!("expected `KEY : VALUE`, found {line:?}"),
                )
            })?;
            header.insert(key.trim().to_ascii_uppercase(), value.trim().to_string());
            section.clear();
            continue;
        }
        let toks: Vec<&str> = line.split_whitespace().collect();
        let need = |k: usize| -> Result<()> {
            if toks.len() < k {
                Err(perr(
                    file,
                    line_no,
                    format!("{section}: expected {k} fields, found {line:?}"),
                ))
            } else {
                Ok(())
            }
        };
        match section.as_str() {
            "NODE_COORD_SECTION" => {
                need(3)?;
                coords.push((
                    num(toks[0], file, line_no, "node id")?,
                    num(toks[1], file, line_no, "x coordinate")?,
                    num(toks[2], file, line_no, "y coordinate")?,
                ));
            }
            "DEMAND_SECTION" => {
                need(2)?;
                demand.insert(
                    num(toks[0], file, line_no, "node id")?,
                    num(toks[1], file, line_no, "integer demand")?,
                );
            }
            "TIME_WINDOW_SECTION" => {
                need(3)?;
                windows.insert(
                    num(toks[0], file, line_no, "node id")?,
                    (
                        num(toks[1], file, line_no, "ready time")?,
                        num(toks[2], file, line_no, "due time")?,
                    ),
                );
            }
            "SERVICE_TIME_SECTION" => {
                need(2)?;
                service.insert(
                    num(toks[0], file, line_no, "node id")?,
                    num(toks[1], file, line_no, "service time")?,
                );
            }
            "DEPOT_SECTION" => {
                let id: i64 = num(toks[0], file, line_no, "depot id")?;
                if id >= 0 {
                    depots.push(id as usize);
                }
            }
            other => return Err(perr(file, line_no, format!("unsupported section {other}"))),
        }
    }
    let name = header
        .get("NAME")
        .cloned()
        .unwrap_or_else(|| file.to_string());
    if let Some(t) = header.get("EDGE_WEIGHT_TYPE") {
        if t != "EUC_2D" {
            return Err(perr(
                file,
                0,
                format!("EDGE_WEIGHT_TYPE {t} unsupported, expected EUC_2D"),
            ));
        }
    }
    if let Some(dim) = header.get("DIMENSION") {
        let dim: usize = num(dim, file, 0, "DIMENSION")?;
        if dim != coords.len() {
            return Err(perr(
                file,
                0,
                format!("DIMENSION {dim} but {} coordinates", coords.len()),
            ));
        }
    }
    if depots.len() > 1 {
        return Err(perr(file, 0, "multiple depots are not supported"));
    }
    let depot = depots
        .first()
        .copied()
        .unwrap_or(coords.first().map_or(1, |c| c.0));
    let capacity: i64 = num(
        header
            .get("CAPACITY")
            .ok_or_else(|| perr(file, 0, "missing CAPACITY"))?,
        file,
        0,
        "integer CAPACITY",
    )?;
    // Depot first, customers in file order.
    let mut order: Vec<&(usize, f64, f64)> = coords.iter().filter(|c| c.0 == depot).collect();
    if order.is_empty() {
        return Err(perr(file, 0, format!("depot {depot} has no coordinates")));
    }
    order.extend(coords.iter().filter(|c| c.0 != depot));
    let labels: Vec<usize> = order.iter().map(|c| c.0).collect();
    let demands = labels
        .iter()
        .map(|id| {
            demand
                .get(id)
                .copied()
                .ok_or_else(|| perr(file, 0, format!("no demand for node {id}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let default_service: f64 = match header.get("SERVICE_TIME") {
        Some(s) => num(s, file, 0, "SERVICE_TIME")?,
        None => 0.0,
    };
    let services = labels
        .iter()
        .map(|id| {
            if *id == depot {
                0.0
            } else {
                service.get(id).copied().unwrap_or(default_service)
            }
        })
        .collect();
    let timed = !windows.is_empty();
    let tw = if timed {
        let mut ready = Vec::new();
        let mut due = Vec::new();
        for id in &labels {
            let w = windows
                .get(id)
                .ok_or_else(|| perr(file, 0, format!("no time window for node {id}")))?;
            ready.push(w.0);
            due.push(w.1);
        }
        Some((ready, due))
    } else {
        None
    };
    let comment = header.get("COMMENT").cloned().unwrap_or_default();
    let fleet = match header.get("VEHICLES") {
        Some(v) => Some(num(v, file, 0, "VEHICLES")?),
        None => number_after(&comment, "No of trucks")
            .map(|v| v as usize)
            .or_else(|| name.rsplit_once("-k").and_then(|(_, k)| k.parse().ok())),
    };
    let convention = if timed {
        DistanceConvention::DimacsTruncated
    } else {
        DistanceConvention::TsplibRounded
    };
    let mut inst = Instance::build(
        name,
        convention,
        order.iter().map(|c| (c.1, c.2)).collect(),
        demands,
        capacity,
        tw,
        services,
        fleet,
    )?;
    inst.labels = labels;
    if let Some(d) = header.get("DISTANCE") {
        inst.max_duration = Some(num(d, file, 0, "DISTANCE")?);
    }
    let bks =
        number_after(&comment, "Optimal value").or_else(|| number_after(&comment, "Best value"));
    inst.best_known = bks.map(|cost| BestKnown {
        cost,
        vehicles: fleet,
    });
    Ok(inst)
}

/// Parses a Solomon VRPTW text file (double precision distances, vehicles-then-distance).
pub fn parse_solomon(text: &str, file: &str) -> Result<Instance> {
    let lines: Vec<&str> = text.lines().collect();
    let name = lines
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .ok_or_else(|| perr(file, 1, "empty file"))?
        .to_string();
    let vehicle_at = lines
        .iter()
        .position(|l| l.contains("NUMBER") && l.contains("CAPACITY"))
        .ok_or_else(|| perr(file, 0, "no `NUMBER CAPACITY` line: not a Solomon file"))?;
    let (fleet, capacity) = lines[vehicle_at + 1..]
        .iter()
        .enumerate()
        .find(|(_, l)| !l.trim().is_empty())
        .map(|(k, l)| -> Result<(usize, i64)> {
            let ln = vehicle_at + 2 + k;
            let t: Vec<&str> = l.split_whitespace().collect();
            if t.len() != 2 {
                return Err(perr(file, ln, "expected `vehicles capacity`"));
            }
            Ok((
                num(t[0], file, ln, "vehicle count")?,
                num(t[1], file, ln, "capacity")?,
            ))
        })
        .ok_or_else(|| perr(file, vehicle_at + 1, "missing vehicle line"))??;
    let cust_at = lines
        .iter()
        .position(|l| l.trim() == "CUSTOMER")
        .ok_or_else(|| perr(file, 0, "no CUSTOMER section"))?;
    let (mut coords, mut demand, mut ready, mut due, mut service) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (k, l) in lines.iter().enumerate().skip(cust_at + 1) {
        let t: Vec<&str> = l.split_whitespace().collect();
        if t.is_empty() || !t[0].chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let ln = k + 1;
        if t.len() != 7 {
            return Err(perr(
                file,
                ln,
                format!("expected 7 columns, found {}", t.len()),
            ));
        }
        let id: usize = num(t[0], file, ln, "customer number")?;
        if id != coords.len() {
            return Err(perr(
                file,
                ln,
                format!("customer numbers must run 0,1,2..; found {id}"),
            ));
        }
        coords.push((num(t[1], file, ln, "x")?, num(t[2], file, ln, "y")?));
        demand.push(num::<f64>(t[3], file, ln, "demand")? as i64);
        ready.push(num(t[4], file, ln, "ready time")?);
        due.push(num(t[5], file, ln, "due date")?);
        service.push(num(t[6], file, ln, "service time")?);
    }
    let mut inst = Instance::build(
        name.clone(),
        DistanceConvention::Exact,
        coords,
        demand,
        capacity,
        Some((ready, due)),
        service,
        Some(fleet),
    )?;
    inst.objective = Objective::VehiclesThenDistance;
    inst.best_known = SOLOMON_BEST_KNOWN
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(&name))
        .map(|&(_, v, c)| BestKnown {
            cost: c,
            vehicles: Some(v),
        });
    Ok(inst)
}

/// Parses CVRPLIB `.sol` text: `Route #k: c1 c2 ...` lines (customers numbered 1..n-1, the
/// depot being 0) and an optional `Cost X` line.
pub fn parse_sol(text: &str, file: &str) -> Result<(Vec<Vec<usize>>, Option<f64>)> {
    let mut routes = Vec::new();
    let mut cost = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Route") {
            let (_, stops) = rest
                .split_once(':')
                .ok_or_else(|| perr(file, i + 1, "expected `Route #k: ...`"))?;
            routes.push(
                stops
                    .split_whitespace()
                    .map(|t| num(t, file, i + 1, "customer number"))
                    .collect::<Result<Vec<usize>>>()?,
            );
        } else if let Some(rest) = line.strip_prefix("Cost") {
            cost = Some(num(rest.trim(), file, i + 1, "cost")?);
        }
    }
    Ok((routes, cost))
}
