"""What a result means: group statistics, patient subtypes, survival, enrichment, trust verdicts, clinical tables,
the result tables the app and the CLI show, and agreement metrics.

Import the submodules (``blue_core.analysis.survival``) or the top-level names (``bc.SurvivalAnalysis``).
"""

__all__: list[str] = []
