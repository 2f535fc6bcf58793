"""Reports are strict JSON: no NaN or Infinity, which the tools that read them refuse."""

import json
import math

import numpy as np

from tailor_lab import report_json


def test_figures_that_are_not_finite_are_written_null_and_the_rest_as_they_are(tmp_path):
    report = {"interleaving_ratio": (10.0, math.inf), "spearman": float("nan"), "lift": np.float64(0.25),
              "runs": np.int64(3), "nested": [{"ratio": -math.inf, "name": "a"}], "ok": True, "none": None}
    path = tmp_path / "report.json"
    report_json.write(path, report)
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text and text.endswith("\n")
    assert json.loads(text) == {"interleaving_ratio": [10.0, None], "spearman": None, "lift": 0.25, "runs": 3,
                                "nested": [{"ratio": None, "name": "a"}], "ok": True, "none": None}
