#!/usr/bin/env python3
"""scikit-learn HistGradientBoostingClassifier on the split `mesh eval fraud --csv` uses.

    pip install scikit-learn pandas
    python3 crates/mesh-fraud/scripts/hgb_compare.py FILE --label COL --time COL [--drop COL ...]

Same rows and features as the Rust trainer: rows ordered by time (stable), the earliest 80%
train, the latest 20% test; the latest 10% of the training period is the validation slice.
Numeric columns as read (missing = NaN); every non-numeric column is categorical, its
categories seen at least 5 times in the fit rows coded by frequency rank (at most 254),
the rest pooled into one code, as `mesh_fraud::gbdt` bins them.

Two runs are printed:
- `hgb_default`: fit on the whole training period with sklearn's defaults (early stopping
  on its own random 10% of it) -- what "HGB on the same split" usually means;
- `hgb_time_val`: fit on the rows before the validation slice, early stopping on the slice
  (`fit(..., X_val=, y_val=)`, sklearn >= 1.6) -- the protocol of the Rust trainer.
"""
import argparse
import json
import resource
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

MISSING = ["", "na", "NA", "nan", "NaN", "null", "NULL", "none", "None", "n/a", "N/A", "?", "-"]
TRUE = {"1", "1.0", "true", "t", "yes", "y"}


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--label", required=True)
    ap.add_argument("--time", required=True)
    ap.add_argument("--drop", action="append", default=[])
    ap.add_argument("--validation-fraction", type=float, default=0.1)
    a = ap.parse_args()

    t0 = time.time()
    df = pd.read_csv(a.csv, na_values=MISSING, keep_default_na=False, low_memory=False)
    load_secs = time.time() - t0
    y = df[a.label].astype(str).str.strip().str.lower().isin(TRUE).to_numpy()
    t = pd.to_numeric(df[a.time], errors="coerce")
    if t.isna().any():
        t = pd.to_datetime(df[a.time]).astype("int64") / 1e9
    order = np.argsort(t.to_numpy(), kind="stable")
    n = len(df)
    n_train = n * 4 // 5
    n_val = int(round(n_train * a.validation_fraction))
    fit, val, test = order[: n_train - n_val], order[n_train - n_val : n_train], order[n_train:]
    train = order[:n_train]

    X = df.drop(columns=[a.label, a.time] + a.drop)
    cat_mask = []
    for c in X.columns:
        if not pd.api.types.is_numeric_dtype(X[c]):
            counts = X[c].iloc[fit].value_counts()
            keep = counts[counts >= 5].index[:254]
            code = {v: i for i, v in enumerate(keep)}
            other = float(len(keep))
            X[c] = X[c].map(lambda v: np.nan if pd.isna(v) else code.get(v, other)).astype(float)
            cat_mask.append(True)
        else:
            X[c] = X[c].astype(float)
            cat_mask.append(False)
    X = X.to_numpy(dtype=np.float64)
    # sklearn's binning fails on a column with no value at all ("window shape cannot be
    # larger than input array shape"); such a column carries nothing, so it is left out
    empty = np.isnan(X[fit]).all(axis=0)
    X, cat_mask = X[:, ~empty], [m for m, e in zip(cat_mask, empty) if not e]
    del df
    out = {
        "csv": a.csv,
        "rows": n,
        "features": X.shape[1],
        "categorical": int(sum(cat_mask)),
        "all_missing_dropped": int(empty.sum()),
        "load_secs": round(load_secs, 2),
    }

    def run(name, fit_rows, early_stopping, **fit_kw):
        m = HistGradientBoostingClassifier(
            categorical_features=np.array(cat_mask), early_stopping=early_stopping, random_state=0
        )
        t, c = time.time(), time.process_time()
        m.fit(X[fit_rows], y[fit_rows], **fit_kw)
        secs, cpu = time.time() - t, time.process_time() - c
        p = m.predict_proba(X[test])[:, 1]
        out[name] = {
            "roc_auc": round(roc_auc_score(y[test], p), 4),
            "pr_auc": round(average_precision_score(y[test], p), 4),
            "fit_secs": round(secs, 2),
            "fit_cpu_secs": round(cpu, 2),
            "n_iter": int(m.n_iter_),
            "peak_rss_mib": round(peak_mib(), 0),
        }

    run("hgb_default", train, "auto")
    try:
        run("hgb_time_val", fit, True, X_val=X[val], y_val=y[val])
    except TypeError as e:  # sklearn < 1.6
        out["hgb_time_val"] = f"unsupported: {e}"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
