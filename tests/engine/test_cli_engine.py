"""blue simulate / train / deconvolve / models, in-process (tiny synthetic reference)."""

from __future__ import annotations

import pandas as pd
import pytest
from _engine_data import synthetic_reference

from blue_core.cli import main


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    synthetic_reference(n_cells=150, n_genes=80, seed=5).write_h5ad(root / "ref.h5ad")
    return root


def test_simulate_train_deconvolve_models(workdir, capsys, monkeypatch):
    ref = str(workdir / "ref.h5ad")
    assert main(["simulate", ref, "--n-samples", "8", "--cells-per-sample", "20", "--out", str(workdir / "sim")]) == 0
    truth = pd.read_csv(workdir / "sim" / "truth.csv")
    assert truth.columns[0] == "sample" and len(truth) == 8
    assert (workdir / "sim" / "bulk.csv.gz").is_file() and (workdir / "sim" / "profiles.h5ad").is_file()

    args = ["train", ref, "--out", str(workdir / "models" / "tiny"), "--n-samples", "64", "--cells-per-sample", "20",
            "--epochs", "1", "--proportion-epochs", "2", "--n-markers", "10", "--threads", "1", "--tissue", "synthetic"]
    assert main(args) == 0
    assert main(args) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err

    out = workdir / "deconv"
    assert main(["deconvolve", str(workdir / "sim"), "--model", str(workdir / "models" / "tiny"), "--out", str(out)]) == 0
    props = pd.read_csv(out / "proportions.csv")
    assert props.columns[0] == "sample" and len(props) == 8
    assert (out / "fit.csv").is_file() and (out / "expression.h5ad").is_file()
    # issue 22.4: the trust verdict and its reasons travel in fit.csv and the h5ad, in the app's words
    fit = pd.read_csv(out / "fit.csv", index_col=0, keep_default_na=False)
    assert {"verdict", "reasons"} <= set(fit.columns) and set(fit["verdict"]) <= {"ok", "caution", "wrong input"}
    from blue_core.engine.result import Deconvolution

    assert list(Deconvolution.read(out).fit["verdict"]) == list(fit["verdict"])

    monkeypatch.setenv("BLUE_MODELS_DIR", str(workdir / "models"))
    capsys.readouterr()
    assert main(["models"]) == 0
    assert "tiny" in capsys.readouterr().out
    assert main(["deconvolve", str(workdir / "sim"), "--model", "tiny", "--out", str(workdir / "d2")]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["deconvolve", "no_such_file.csv", "--model", "{dir}", "--out", "{tmp}"], "not found"),
        (["deconvolve", "{ref}", "--model", "no_such_model", "--out", "{tmp}"], "no model named"),
        (["train", "--out", "{tmp}/m"], "single-cell reference"),
        (["train", "{ref}", "--recipe", "r.toml", "--out", "{tmp}/m"], "not both"),
        (["train", "no_such.h5ad", "--out", "{tmp}/m"], "not found"),
        (["simulate", "{ref}", "--n-samples", "0", "--out", "{tmp}/s"], "n_samples"),
        (["simulate", "{ref}", "--cell-type-key", "nope", "--out", "{tmp}/s"], "nope"),
        (["train", "--out", "{tmp}/m", "--bank-only"], "--bank-only needs --recipe FILE"),
    ],
)
def test_user_errors_exit_2_with_one_line(workdir, capsys, argv, message):
    subs = {"{ref}": str(workdir / "ref.h5ad"), "{tmp}": str(workdir / "err"), "{dir}": str(workdir)}
    argv = [a.replace("{ref}", subs["{ref}"]).replace("{tmp}", subs["{tmp}"]).replace("{dir}", subs["{dir}"])
            for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_help_texts(capsys):
    for command in ("simulate", "train", "deconvolve", "models"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: blue " + command in capsys.readouterr().out


def test_deconvolve_adapt_on_runs_it_and_refuses_a_small_cohort(workdir, capsys):
    """--adapt on: the result's report says adaptation ran; a cohort below the floor gets one clear line."""
    from blue_core.engine.result import Deconvolution

    ref = str(workdir / "ref.h5ad")
    assert main(["simulate", ref, "--n-samples", "10", "--cells-per-sample", "20", "--out", str(workdir / "sim10")]) == 0
    model = workdir / "models" / "tiny_a"
    assert main(["train", ref, "--out", str(model), "--n-samples", "64", "--cells-per-sample", "20", "--epochs", "1",
                 "--proportion-epochs", "2", "--n-markers", "10", "--threads", "1"]) == 0
    capsys.readouterr()
    out = workdir / "adapted"
    assert main(["deconvolve", str(workdir / "sim10"), "--model", str(model), "--out", str(out), "--adapt", "on"]) == 0
    assert "adapted to this cohort" in capsys.readouterr().err
    assert Deconvolution.read(out).input_report["adaptation"]["ran"] is True
    import json

    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["adaptation"]["ran"] is True and provenance["adaptation"]["settings"]["steps"] == 300
    bulk = pd.read_csv(workdir / "sim10" / "bulk.csv.gz", index_col=0)
    bulk.iloc[:, :3].to_csv(workdir / "three.csv")
    assert main(["deconvolve", str(workdir / "three.csv"), "--model", str(model), "--out", str(workdir / "a3"),
                 "--adapt", "on"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1].startswith("blue deconvolve: error: adaptation needs")
    assert "at least 8 samples and this one has 3" in err
    assert not (workdir / "a3").exists()  # nothing half-written
    assert main(["deconvolve", str(workdir / "three.csv"), "--model", str(model), "--out", str(workdir / "a3"),
                 "--adapt", "auto"]) == 0
    assert "not adapted to this cohort (3 samples" in capsys.readouterr().err
