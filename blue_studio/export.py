"""The analysis zip the sidebar offers: built from inputs passed in (no session state read here), so that
``cache`` and ``state`` need not import each other."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["analysis_zip"]


def analysis_zip(result: Any, *, model: Any, trust: Any, labels: Any, survival: Any,
                 inputs: Mapping[str, str | None]) -> Callable[[], bytes]:
    """This session's analysis as one zip (``blue_core.io.bundle.write_bundle``): inputs' names, model, proportions,
    GEPs, fit, trust verdicts, subtypes and survival when they exist.

    Returns a callable for ``st.download_button``. Everything it needs is passed in **now**, in the script run,
    because Streamlit calls a deferred download later, outside the session (where ``st.session_state`` is empty:
    the button used to fail with ``MediaFileStorageError``).
    """
    from blue_core.io.bundle import write_bundle

    return functools.partial(write_bundle, result, model=model, inputs=dict(inputs), trust=trust, subtypes=labels,
                             survival=survival if labels is not None else None)
