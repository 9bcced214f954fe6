def report(y, p, k):
    n = len(y); acc = sum(int(a == b) for a, b in zip(y, p)) / n
    f1s = []
    for c in range(k):
        tp = sum(1 for a, b in zip(y, p) if a == c and b == c)
        fp = sum(1 for a, b in zip(y, p) if a != c and b == c)
        fn = sum(1 for a, b in zip(y, p) if a == c and b != c)
        pr = tp / (tp + fp) if tp + fp else 0.0
        rc = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * pr * rc / (pr + rc) if pr + rc else 0.0)
    return {"n": n, "acc": round(acc, 4), "macro_f1": round(sum(f1s) / k, 4), "per_class_f1": [round(f, 4) for f in f1s]}
