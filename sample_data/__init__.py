"""Demo cohorts shipped with BLUE studio (one folder per cohort: cohort.json, bulk.csv.gz, ...).

Found by :mod:`blue_core.io.datasets` through ``importlib.resources`` (installed as ``blue_sample_data``)."""
