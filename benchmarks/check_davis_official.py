"""Cross-check clips4.eval.davis against the official davis2017-evaluation code on random masks.

Usage (from the repository root; needs a checkout of davisvideochallenge/davis2017-evaluation and OpenCV, which
clips4 itself does not depend on):

    pip install --no-deps --target /tmp/cv opencv-python-headless
    PYTHONPATH=.:/tmp/cv python benchmarks/check_davis_official.py PATH/TO/davis2017-evaluation [CASES]

Compares J (db_eval_iou), F (f_measure) and the per-object statistics (db_statistics: mean, recall, decay) on
CASES random cases (default 300): smooth random blobs of 20-200 px, empty masks and 1-3 px shifts. Prints the
largest absolute difference; 0 means the two agree exactly.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from scipy.ndimage import gaussian_filter

from clips4.eval.davis import boundary_f, jaccard, statistics


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    from davis2017.metrics import db_eval_iou, f_measure
    from davis2017.utils import db_statistics

    cases = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(cases):
        height, width = rng.integers(20, 200, 2)

        def blob(height=height, width=width) -> np.ndarray:
            if rng.integers(0, 4) == 0:
                return np.zeros((height, width), bool)
            smooth = gaussian_filter(rng.normal(size=(height, width)), rng.uniform(1, 6))
            return smooth > rng.uniform(0, 0.3)

        truth, prediction = blob(), blob()
        if rng.random() < 0.3:
            prediction = np.roll(truth, rng.integers(-3, 4), axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the official J divides 0 by 0 before replacing it with 1
            official_j = db_eval_iou(truth, prediction)
        official_f = f_measure(prediction.astype(np.uint8), truth.astype(np.uint8))
        worst = max(
            worst, abs(official_j - jaccard(truth, prediction)), abs(official_f - boundary_f(truth, prediction))
        )
        values = rng.random(rng.integers(1, 90))
        worst = max(worst, *(abs(a - b) for a, b in zip(db_statistics(values), statistics(values), strict=True)))
    print(f"{cases} random cases: largest absolute difference from the official code = {worst}")


if __name__ == "__main__":
    main()
