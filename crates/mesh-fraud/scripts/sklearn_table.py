#!/usr/bin/env python3
"""Write a real table that ships inside scikit-learn (no download) as a CSV for
`mesh eval fraud --csv`: breast_cancer (569 rows, 30 numeric columns), label `malignant`,
time `t` = the row's position in the shipped file (the table has no time of its own).

    pip install scikit-learn
    python3 crates/mesh-fraud/scripts/sklearn_table.py OUT.csv
"""
import sys

from sklearn.datasets import load_breast_cancer


def main():
    d = load_breast_cancer(as_frame=True)
    df = d.data.copy()
    df.columns = [c.replace(" ", "_") for c in df.columns]
    df.insert(0, "malignant", (d.target == 0).astype(int))  # target 0 is malignant
    df.insert(1, "t", range(len(df)))
    df.to_csv(sys.argv[1], index=False)
    print(f"{sys.argv[1]}: {len(df)} rows, {df['malignant'].sum()} malignant")


if __name__ == "__main__":
    main()
