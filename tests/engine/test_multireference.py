"""Issue 10: multi-reference training (union genes, masks), platform-robust selection, reference QC."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from _engine_data import synthetic_reference

from blue_core.exceptions import BlueWarning
from blue_core.engine.gene_selection import excluded_genes, select_input_genes
from blue_core.engine.qc import check_reference_markers, marker_qc_messages
from blue_core.engine.fitting import _gep_mse
from blue_core.engine.training import train_model
from blue_core.engine.training_sets import _reference_tensors

TINY = dict(n_samples=96, n_validation_samples=32, cells_per_sample=30, epochs=1, proportion_epochs=2, batch_size=32,
            network=dict(hidden=16, signal_length=16, base_channels=2, depth=2), n_markers=10, n_output_genes=60)


def _renamed(ref: ad.AnnData, start: int) -> ad.AnnData:
    out = ref.copy()
    out.var_names = [f"GENE{start + j}" for j in range(out.n_vars)]
    return out


def test_gep_loss_ignores_unmeasured_genes():
    p = torch.tensor([[1.0, 0.0]])
    g = torch.zeros(1, 2, 4)
    pred = torch.zeros(1, 2, 4)
    pred[0, 0, 3] = 100.0  # a huge error on gene 3 ...
    mask = torch.tensor([[True, True, True, False]])  # ... which this sample's reference did not measure
    assert _gep_mse(pred, g, p, mask).item() == 0.0
    assert _gep_mse(pred, g, p).item() > 0


def test_reference_tensors_mask_genes_the_reference_lacks():
    ref = synthetic_reference(n_cells=90, n_genes=40, seed=2)
    inputs = ["GENE0", "GENE1", "NOT_MEASURED"]
    outputs = ["GENE0", "GENE5", "ALSO_MISSING"]
    (x, p, g, mask), pb, out_mask = _reference_tensors(ref, 8, inputs, outputs, ["type0", "type1", "type2"], 20, {}, 0,
                                                      None, lambda f, m: None)
    assert x.shape == (8, 3) and torch.all(x[:, 2] == 0)  # missing input = the sample mean after standardising
    assert out_mask.tolist() == [True, True, False]
    assert mask.shape == (8, 3) and not mask[:, 2].any() and mask[:, :2].all()
    assert torch.all(g[:, :, 2] == 0) and pb.output_genes == ["GENE0", "GENE5"]


def test_two_references_union_of_genes_and_types():
    a = _renamed(synthetic_reference(n_cells=150, n_genes=60, n_types=3, seed=1), 0)
    b = _renamed(synthetic_reference(n_cells=160, n_genes=60, n_types=4, seed=3), 30)  # type3 only here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BlueWarning)
        model = train_model({"a": a, "b": b}, name="two", **TINY)
    assert model.cell_types == ["type0", "type1", "type2", "type3"]
    only_b = {f"GENE{j}" for j in range(60, 90)}
    assert only_b & set(model.input_genes) and only_b & set(model.output_genes)  # nothing thrown away
    only_a = {f"GENE{j}" for j in range(30)}
    assert only_a & set(model.input_genes)
    summary = model.card["reference_summary"]
    assert set(summary["references"]) == {"a", "b"} and summary["n_cells"] == 310
    assert model.card["gene_selection"]["union_over_references"] is True
    props, _ = model.predict(np.zeros((2, len(model.input_genes)), dtype=np.float32))
    assert props.shape == (2, 4)


def test_platform_sensitive_genes_are_never_markers():
    ref = synthetic_reference(n_cells=150, n_genes=60, seed=1)
    names = [f"GENE{j}" for j in range(60)]
    names[:4] = ["RPL13", "RPS27A", "MT-CO1", "HLA-DRA"]  # block markers of type0
    ref.var_names = names
    chosen = select_input_genes(ref, n_per_cell_type=20)
    assert not set(chosen) & {"RPL13", "RPS27A", "MT-CO1", "HLA-DRA"}
    assert {"RPL13", "HLA-DRA"} <= set(select_input_genes(ref, n_per_cell_type=20, exclude=None))
    assert excluded_genes(["RPS6KA1", "MTOR", "RPL10L", "MRPS18B"]).tolist() == [False, False, True, True]


def _blood_like(with_markers: bool) -> ad.AnnData:
    rng = np.random.default_rng(0)
    genes = ["MS4A1", "CD79A", "CD3D", "IL7R", "LEF1", "NKG7", "GNLY"] + [f"G{j}" for j in range(30)]
    if not with_markers:
        genes = [g if g not in ("CD3D", "IL7R", "LEF1") else f"X{g}" for g in genes]
    counts = rng.poisson(1.0, size=(90, len(genes))).astype(np.float32)
    labels = np.repeat(["B", "CD4 T", "NK"], 30)
    counts[:30, :2] += 20
    counts[30:60, 2:5] += 20
    counts[60:, 5:7] += 20
    return ad.AnnData(sp.csr_matrix(counts), obs=pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(90)]),
                      var=pd.DataFrame(index=genes))


def test_marker_qc_flags_a_type_without_its_canonical_markers():
    good = check_reference_markers(_blood_like(True))
    assert good.set_index("cell_type")["ok"].to_dict() == {"B": True, "CD4 T": True, "NK": True}
    bad = check_reference_markers(_blood_like(False)).set_index("cell_type")
    assert not bad.loc["CD4 T", "ok"] and "IL7R" in bad.loc["CD4 T", "missing"]
    messages = marker_qc_messages(bad.reset_index(), name="ref.h5ad")
    assert len([m for m in messages if "'CD4 T'" in m and "none of its canonical markers" in m]) == 1


def test_read_reference_and_training_report_marker_qc(tmp_path):
    from blue_core.io import read_reference

    path = tmp_path / "ref.h5ad"
    _blood_like(False).write_h5ad(path)
    with pytest.warns(BlueWarning, match="'CD4 T'.*none of its canonical markers"):
        ref = read_reference(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BlueWarning)
        model = train_model(ref, name="qc", min_fold_change=1.0, **{**TINY, "n_markers": 10, "n_output_genes": 20})
    assert any("'CD4 T'" in m for m in model.card["reference_qc"]["reference"])


def test_platform_factors_scale_the_bulk_not_the_targets():
    from blue_core.engine.simulation import simulate
    from blue_core.engine.training_sets import platform_factors

    ref = synthetic_reference(n_cells=150, n_genes=200, seed=4)
    genes = [str(g) for g in ref.var_names]
    labels = ref.obs["cell_type"].astype(str)
    means = pd.DataFrame({t: np.asarray(ref.X[(labels == t).to_numpy()].sum(axis=0)).ravel() for t in ["type0", "type1"]},
                         index=genes)
    sorted_cells = means.copy()
    sorted_cells.loc["GENE150", "type0"] *= 20  # bulk RNA-seq reads this gene much higher in type0
    factors, summary = platform_factors(ref, sorted_cells, cell_types=["type0", "type1", "type2"], shrinkage=0.5)
    g = genes.index("GENE150")
    assert factors[0, g] > 2.5 and summary["types"] == ["type0", "type1"]
    assert np.allclose(factors[2], 1.0)  # no profile for type2
    plain = simulate(ref, 20, cells_per_sample=50, seed=0)
    calibrated = simulate(ref, 20, cells_per_sample=50, seed=0, type_gene_factors=factors)
    assert np.array_equal(plain.profiles, calibrated.profiles) and np.array_equal(plain.proportions, calibrated.proportions)
    assert calibrated.bulk[:, g].sum() > 1.3 * plain.bulk[:, g].sum()  # type0 is part of each mixture
    model = train_model(ref, name="cal", platform_profiles=sorted_cells, **TINY)
    assert model.card["platform_calibration"]["per_reference"]["reference"]["types"] == ["type0", "type1"]


def test_mixed_pseudo_bulk_brings_types_of_two_references_together():
    a = _renamed(synthetic_reference(n_cells=120, n_genes=60, n_types=2, seed=1), 0)   # type0, type1
    b = _renamed(synthetic_reference(n_cells=120, n_genes=60, n_types=2, seed=3), 20)
    b.obs["cell_type"] = pd.Categorical(b.obs["cell_type"].astype(str).map({"type0": "type2", "type1": "type3"}))
    import blue_core.engine.training_sets as training_sets

    seen = []
    real = training_sets._reference_tensors

    def spy(reference, *args, **kwargs):
        out = real(reference, *args, **kwargs)
        seen.append((set(reference.obs["cell_type"].astype(str)), out[0][1].numpy(), out[2].sum()))
        return out

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore", BlueWarning)
        mp.setattr(training_sets, "_reference_tensors", spy)
        model = train_model({"a": a, "b": b}, name="mix", mixed_fraction=0.5, **TINY)
    assert model.cell_types == ["type0", "type1", "type2", "type3"]
    mixed = [(props, n_out) for types, props, n_out in seen if len(types) == 4]
    assert mixed, "no pseudo-bulk mixed the two references"
    props, n_out = mixed[0]
    assert ((props[:, :2].sum(axis=1) > 0) & (props[:, 2:].sum(axis=1) > 0)).any()  # both references' types at once
    assert n_out < len(model.output_genes)  # only the shared genes are measured there (the rest masked)
    assert sum(p.shape[0] for _, p, _ in seen) == TINY["n_samples"] + TINY["n_validation_samples"]
    assert model.card["gene_selection"]["mixed_fraction"] == 0.5
    assert model.card["validation"]["n_validation_samples"] == TINY["n_validation_samples"]


def test_train_page_shows_the_marker_qc(tmp_path):
    from _app_helpers import page, plain

    path = tmp_path / "ref.h5ad"
    _blood_like(False).write_h5ad(path)
    at = page("6_Train_a_model.py")
    at.session_state["ref_bytes"] = path.read_bytes()
    at.session_state["ref_filename"] = "my_pbmc.h5ad"
    at.run()
    assert not at.exception
    shown = [plain(w.value) for w in at.warning]
    assert any("'CD4 T'" in w and "canonical markers" in w and "my_pbmc.h5ad" in w for w in shown), shown
