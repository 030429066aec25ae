"""Expectations: one boolean column per expectation, counted in one pass before
anything is written.

NULL semantics: a row passes an expectation only when its condition is TRUE. A
condition that evaluates to NULL (e.g. `amount > 0` with a NULL amount) counts as
a failed record: kept and counted for warn, dropped for DROP ROW, and it fails
the flow for FAIL UPDATE. Write `amount IS NULL OR amount > 0` to accept NULLs.
A row that violates several DROP expectations counts once in `dropped_records`
and once in each expectation's `failed_records`.
"""


class ExpectationViolation(Exception):
    pass


def _col(i):
    return f"__kiln_exp_{i}"


def check_expression(frame, exp):
    """Raises if the expectation's condition does not analyse against the frame."""
    try:
        frame.selectExpr(f"CAST(({exp['expr']}) AS BOOLEAN) AS e").schema
    except Exception as exc:  # noqa: BLE001
        raise ExpectationViolation(
            f"expectation '{exp['name']}' ({exp['expr']}) is not a valid condition: "
            + str(exc).splitlines()[0]
        ) from None


def apply_view(frame, exps):
    """Views' DROP ROW expectations filter where the view is read."""
    drops = [e for e in exps if e["action"] == "drop"]
    for e in drops:
        frame = frame.filter(f"coalesce(({e['expr']}), false)")
    return frame


class Evaluation:
    def __init__(self, exps):
        self.exps = exps
        self.total = 0
        self.failed = [0] * len(exps)
        self.dropped = 0

    def evaluate(self, spark, frame, flow):
        """Counts, fails on FAIL UPDATE violations, returns the rows to write."""
        if not self.exps:
            return frame
        columns = frame.columns
        flagged = frame.selectExpr(
            "*", *[f"coalesce(CAST(({e['expr']}) AS BOOLEAN), false) AS {_col(i)}" for i, e in enumerate(self.exps)]
        )
        drops = [i for i, e in enumerate(self.exps) if e["action"] == "drop"]
        keep = " AND ".join(_col(i) for i in drops) if drops else "true"
        sums = [f"sum(CASE WHEN {_col(i)} THEN 0 ELSE 1 END) AS f{i}" for i in range(len(self.exps))]
        row = flagged.selectExpr("count(*) AS n", *sums, f"sum(CASE WHEN {keep} THEN 0 ELSE 1 END) AS d").collect()[0]
        self.total = int(row["n"] or 0)
        self.failed = [int(row[f"f{i}"] or 0) for i in range(len(self.exps))]
        self.dropped = int(row["d"] or 0)
        for i, e in enumerate(self.exps):
            if e["action"] == "fail" and self.failed[i] > 0:
                raise ExpectationViolation(
                    f"Flow '{flow}' failed: expectation '{e['name']}' ({e['expr']}) was violated "
                    f"by {self.failed[i]} record(s); nothing was written (ON VIOLATION FAIL UPDATE)."
                )
        kept = flagged.filter(keep) if drops else flagged
        return kept.select(*[f"`{c}`" for c in columns])

    def report(self):
        if not self.exps:
            return None
        return {
            "dropped_records": self.dropped,
            "expectations": [
                {
                    "name": e["name"],
                    "dataset": e.get("dataset"),
                    "passed_records": self.total - self.failed[i],
                    "failed_records": self.failed[i],
                }
                for i, e in enumerate(self.exps)
            ],
        }
