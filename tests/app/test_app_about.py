"""AppTest of the About page: what BLUE is, how to read the plots, how to cite, model validation."""

from __future__ import annotations

from _app_helpers import assert_clean, installed_models, page, texts


def test_about_content_and_model_cards() -> None:
    at = page("7_About.py").run()
    assert_clean(at)
    text = texts(at)
    for needle in ("How to read the plots", "How to cite", "PLOS Computational Biology", "Kaplan", "Fit score"):
        assert needle in text
    models = installed_models()
    expanders = [e.label for e in at.expander]
    assert len([e for e in expanders if e.startswith("Model card")]) == len(models)
    if models:  # each card shows its validation numbers
        assert any(m.label == "Cell types" for m in at.metric)
