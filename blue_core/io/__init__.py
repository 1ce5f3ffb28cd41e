"""Files in and out: bulk tables and single-cell references read and checked, gene names harmonised, safe paths,
strict JSON, HDF5 opened safely, bundles, the shipped demo cohorts.

The package re-exports its readers (``blue_core.io.read_bulk`` and friends keep working); each rule lives in
one submodule.
"""

from __future__ import annotations

from .bulk import read_bulk
from .reference import read_reference, read_reference_obs
from .report import REPORT_WORDS, input_report_lines, report_words
from .source import BulkSource, InputLimits
from .units import LOG_BASES, check_finite, convert_units

__all__ = ["REPORT_WORDS", "report_words", "read_bulk", "read_reference", "read_reference_obs", "BulkSource",
           "InputLimits", "input_report_lines", "check_finite", "convert_units", "LOG_BASES"]
