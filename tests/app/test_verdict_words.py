"""Issue 22.4: every results page shows the trust verdict of the Data & model page, in the same words."""

from __future__ import annotations

import re
import warnings

from _app_helpers import assert_clean, demo_result, page, plain, require_model, texts

RESULT_PAGES = ("2_Proportions.py", "3_Cell_type_expression.py", "4_Subtypes_and_survival.py", "5_Enrichment.py")
WORDS = re.compile(r"(\d+) ok, (\d+) caution, (\d+) wrong input")


def test_every_results_page_shows_the_data_pages_verdict() -> None:
    require_model("pbmc")
    from blue_core.io.datasets import sample_root
    from blue_core.io import read_bulk
    from blue_core.analysis.trust import assess
    from blue_studio import cache

    cohort, model, result, name = demo_result("monaco_pbmc")
    bulk = read_bulk(sample_root() / "monaco_pbmc" / "bulk.csv.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts = assess(bulk, result, model=model).counts
    expected = f"{counts['ok']} ok, {counts['caution']} caution, {counts['wrong input']} wrong input"
    for filename in RESULT_PAGES:
        at = page(filename)
        for key, value in {"model_name": name, "bulk_source": "demo", "demo_name": "monaco_pbmc",
                           "bulk_label": f"demo: {cohort.title}", "clinical": cohort.clinical, "truth": cohort.truth,
                           "cohort_info": cohort.info, "result": result,
                           "result_key": ("demo:monaco_pbmc", cache.model_key(model))}.items():
            at.session_state[key] = value
        at.run()
        assert_clean(at)
        lines = [plain(e.value) for e in [*at.success, *at.warning, *at.error] if "Trust verdict:" in plain(e.value)]
        assert len(lines) == 1, filename
        assert WORDS.search(lines[0]).group(0) == expected, filename
        assert "poorly explained" not in texts(at) and "well explained" not in texts(at), filename
