"""BLUE studio's app package: the Streamlit side of BLUE (``app.py`` and ``pages/`` use it).

- :mod:`blue_studio.state`: per-session state and callbacks.
- :mod:`blue_studio.cache`: cached calls into ``blue_core`` (keyed on content hashes).
- :mod:`blue_studio.views`: widgets, messages, escaping, the model card and the input report.

Figures come from :mod:`blue_core.plotting`, clinical-column rules from :mod:`blue_core.analysis.clinical`; no
science lives here.
"""
