"""Peer benchmark, report: ``bench/results/peers.md`` with its figures, and the published-runs block
(``bench/peers.py``)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_common import COST_SIZES, MARKERS_PER_TYPE, REPO, SCORED_PBMC, WORK  # noqa: E402
from peers_scoring import nnls_sensitivity, score_gep_abis, score_gep_pseudo, score_hba1c, score_proportions  # noqa: E402
from _tables import replace_section  # noqa: E402


LABELS = {"blue": "BLUE", "nnls": "NNLS", "svr": "nu-SVR (CIBERSORT alg.)", "tape": "TAPE", "scaden": "Scaden",
          "bayesprism": "BayesPrism (Python port 0.1.0)"}


GEP_LABELS = {"blue": "BLUE", "bayesprism": "BayesPrism (Python port 0.1.0)", "nnls": "closed-form E[Z|X] (NNLS fractions)",
              "svr": "closed-form E[Z|X] (nu-SVR fractions)", "tape": "TAPE high-resolution"}


#: Earlier single runs on this machine (issue 6), scTAPE defaults, full references, 6 coarse types.
REFERENCE_POINTS = {("monaco", "tape"): 0.66, ("monaco", "scaden"): 0.80, ("monaco", "nnls"): -0.43,
                    ("fadista", "tape"): -0.56, ("fadista", "scaden"): -0.55}


def _f(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Rows of pre-formatted cells as markdown lines (through the benches' one table writer)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _tables import markdown_table

    return markdown_table(pd.DataFrame(rows, columns=header), number_format=None).splitlines() + [""]


def _task_results(outputs: dict, task: str, group: str, methods) -> dict[str, dict]:
    res = {}
    for m in methods:
        o = outputs[group].get(m)
        if o and not o.get("failed") and task in o["bulks"] and not o["bulks"][task].get("failed"):
            res[m] = o["bulks"][task]
    return res


def _common_genes(results: dict[str, dict], base: list[str]) -> list[str]:
    genes = list(base)
    for res in results.values():
        if res.get("gep") is not None:
            s = set(res["gep_genes"])
            genes = [g for g in genes if g in s]
    return genes


def _with_estimates(cost: dict[str, float]) -> dict[str, tuple[float, bool]]:
    """Measured times, plus linear extrapolations from the largest measured n (flag True = estimate)."""
    if not cost:
        return {}
    n_max = max(int(n) for n in cost)
    out = {n: (v, False) for n, v in cost.items()}
    for n in COST_SIZES:
        if n > n_max and len(cost) and str(n) not in out:
            out[str(n)] = (cost[str(n_max)] * n / n_max, True)
    return out


def _plots(scores: dict, tasks: dict, methods: list[str], outdir: Path, cost: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    # 1. Monaco predicted vs flow, one panel per method.
    mon = {m: s for m, s in scores["monaco"].items()}
    if mon:
        fig, axes = plt.subplots(1, len(mon), figsize=(3.2 * len(mon), 3.3), squeeze=False)
        truth = tasks["monaco"]["truth"]
        for ax, (m, s) in zip(axes[0], mon.items()):
            for t in truth.columns:
                ax.scatter(truth[t], s["pred"][t], s=14, label=t)
            ax.plot([0, 0.7], [0, 0.7], color="grey", lw=0.8)
            ax.set_title(f"{LABELS[m]}\nCCC {_f(s['ccc'])}", fontsize=9)
            ax.set_xlabel("flow cytometry fraction")
        axes[0][0].set_ylabel("predicted fraction")
        axes[0][-1].legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(outdir / "peers_monaco.png", dpi=110)
        plt.close(fig)
        files.append("peers_monaco.png")
    # 2. Fadista beta fraction vs HbA1c.
    fad = scores.get("fadista", {})
    if fad:
        fig, axes = plt.subplots(1, len(fad), figsize=(3.2 * len(fad), 3.1), squeeze=False)
        for ax, (m, s) in zip(axes[0], fad.items()):
            if s["n"]:
                ax.scatter(s["hba1c"], s["beta"], s=10)
            ax.set_title(f"{LABELS[m]}\nr {_f(s['r'])}, p {s['p']:.1g}", fontsize=9)
            ax.set_xlabel("HbA1c (%)")
        axes[0][0].set_ylabel("predicted beta-cell fraction")
        fig.tight_layout()
        fig.savefig(outdir / "peers_fadista.png", dpi=110)
        plt.close(fig)
        files.append("peers_fadista.png")
    # 3. Summary bars.
    panels = [("pbmc_pseudo", "ccc", "pbmc3k held-out CCC"), ("xin_pseudo", "ccc", "Xin held-out CCC"),
              ("monaco", "ccc", "Monaco vs flow CCC"), ("fadista", "r", "Fadista beta vs HbA1c r")]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.2))
    for ax, (task, key, title) in zip(axes, panels):
        ms = [m for m in methods if m in scores.get(task, {})]
        ax.bar([LABELS[m].split(" ")[0] for m in ms], [scores[task][m][key] for m in ms], color="tab:blue")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=30)
    fig.tight_layout()
    fig.savefig(outdir / "peers_summary.png", dpi=110)
    plt.close(fig)
    files.append("peers_summary.png")
    # 4. Cost: seconds vs samples.
    if cost:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for label, series in cost.items():
            xs = sorted(int(n) for n in series)
            ax.plot(xs, [series[str(n)] for n in xs], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("bulk samples")
        ax.set_ylabel("seconds (trained model -> results)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(outdir / "peers_cost.png", dpi=110)
        plt.close(fig)
        files.append("peers_cost.png")
    return files


def write_report(outputs: dict, tasks: dict, methods: list[str], args, outdir: Path, run_s: float) -> Path:
    import platform
    import subprocess as sp

    outdir.mkdir(parents=True, exist_ok=True)
    scores: dict[str, dict] = {}
    lines: list[str] = []
    try:
        commit = sp.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    cmd = "python bench/peers.py" + (" --quick" if args.quick else "") + (
        f" --threads {args.threads}" if args.threads != 1 else "")
    lines += [
        "# Peer benchmark: BLUE vs NNLS, nu-SVR, TAPE, Scaden, BayesPrism",
        "",
        f"Written by `{cmd}` (commit {commit}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"total {run_s / 60:.1f} min). Every number below comes from this run. Machine: {os.cpu_count()} CPU cores "
        f"shared with other jobs, {args.threads} torch/BLAS thread(s) per method, "
        f"{platform.python_version()}; peers from `bash bench/peers_setup.sh` (scTAPE 1.1.2, bayesprism 0.1.0). Single runs, seed 0: "
        "times on a shared machine vary by tens of percent.",
        "",
    ]
    if args.quick:
        lines += ["**QUICK RUN** (`--quick`): a smoke test. 30 held-out pseudo-bulks, GEPs on 3, timing at 100 "
                  "samples only, and TAPE / Scaden / BLUE trained for 2 epochs on a few hundred samples. "
                  "NOT the benchmark's numbers.", ""]
    lines += [
        "## Setup",
        "",
        "- Same reference and genes for every method. Group *pbmc*: pbmc3k (clustifyr; 10x v1, 1 donor) with the 7 "
        "`cell_type_coarse` labels (B, CD4 T, CD8 T, NK, Monocyte, DC, Platelet), split 80/20 by cell within each "
        "type (seed 0). The 80 % split is the reference of every method, for the held-out pseudo-bulk *and* for "
        f"Monaco; genes = pbmc3k genes also measured in Monaco ({tasks['monaco']['n_genes']}). Group *islet*: Xin "
        f"(scClassify; alpha, beta, delta, gamma), same split; genes = Xin genes also in Fadista "
        f"({tasks['fadista']['n_genes']}).",
        "- One trained network per method and group serves both of its bulks (TAPE/Scaden: scTAPE's pipeline with "
        "the real cohort as its test data, then the same genes and scaling applied to the pseudo-bulk).",
        "- Held-out pseudo-bulk (ours, independent of every method's simulator): Dirichlet(1) fractions, 500 cells "
        "drawn with replacement from the 20 % held-out cells, counts summed. Truth GEP of a type = CPM of the summed "
        "counts of its cells in that sample.",
        "- Monaco truth: flow-cytometry fine fractions summed to 6 coarse types "
        "(B = B.Naive + B.Memory; CD4 T = T.CD4.Naive + T.CD4.Memory; CD8 T = T.CD8.Naive + T.CD8.Memory; NK; "
        "Monocyte = Monocytes.C + Monocytes.NC.I; DC = mDCs + pDCs), renormalised to sum 1; MAIT, gamma-delta T, "
        "plasmablasts and low-density granulocytes are left out. Predictions are summed into the same 6 types "
        "(Platelet dropped) and renormalised.",
        "- NNLS / nu-SVR: signature = mean per-cell CPM of each type (`blue_core.engine.baselines.signature_from_reference`) "
        f"on the top {MARKERS_PER_TYPE} marker genes per type (log2 fold change over the highest other type, fixed a "
        "priori). nu-SVR follows CIBERSORT (standardised signature and mixture, nu in {0.25, 0.5, 0.75}, best by fit "
        "RMSE). Their GEPs: closed-form E[Z|X] (BayesPrism's expected expression) with their own fractions.",
        "- TAPE (overall adaptive mode for fractions, high-resolution mode for GEPs) and Scaden (3-model ensemble) run "
        "with scTAPE's documented defaults (5,000 simulated samples, variance threshold 0.98, MinMax scaling, "
        "128 epochs, batch 128).",
        "- BayesPrism (Chu et al. 2022): the Python port on PyPI (`bayesprism` 0.1.0, MIT; its own venv from "
        "`bash bench/peers_setup.sh`) with the port's defaults: every reference cell as the prior (types as states), "
        "Gibbs chain 1,000 / burn-in 500 / thinning 2 (seed 0), the MAP reference update and the final Gibbs run for "
        "the fractions; GEPs = the per-type posterior expected counts Z (`get_exp`), scaled to CPM per sample.",
        "- BLUE: held-out pseudo-bulk with a model trained here by `blue_core.train_model` (defaults) on the same 80 % "
        "split; real cohorts with the shipped pretrained models (`pbmc`, `pancreas`), whose cell-type names are mapped "
        "onto the scored types (mapping below). The pretrained models' references differ from the peers' (see their "
        "cards): that is the product as shipped, not a same-reference comparison.",
        "",
    ]

    # --- Proportions ---
    lines += ["## Proportions", ""]
    prop_rows = []
    per_type_blocks = []
    for task, title in (("pbmc_pseudo", "pbmc3k held-out pseudo-bulk"), ("xin_pseudo", "Xin held-out pseudo-bulk"),
                        ("monaco", "Monaco PBMC vs flow cytometry (6 types, n = 12)")):
        group = tasks[task]["group"]
        res = _task_results(outputs, task, group, methods)
        scores[task] = {}
        for m, r in res.items():
            scores[task][m] = score_proportions(tasks[task]["truth"], r["proportions"], renormalise=task == "monaco")
        rows = [[LABELS[m], _f(s["ccc"]), _f(s["r"]), _f(s["rmse"], 3)] for m, s in scores[task].items()]
        prop_rows.append((title, rows))
        types = list(tasks[task]["truth"].columns)
        per_type_blocks.append((title, types, [[LABELS[m]] + [f"{_f(s['per_type'][t]['r'])} / {_f(s['per_type'][t]['rmse'], 3)}"
                                                               for t in types] for m, s in scores[task].items()]))
    for title, rows in prop_rows:
        lines += [f"**{title}**", ""]
        lines += _table(["method", "CCC", "Pearson r", "RMSE"], rows)
    lines += ["Per cell type (Pearson r / RMSE):", ""]
    for title, types, rows in per_type_blocks:
        lines += [f"*{title}*", ""] + _table(["method"] + types, rows)

    sens = nnls_sensitivity(WORK / "pbmc", "monaco",
                            lambda p: score_proportions(tasks["monaco"]["truth"], p, renormalise=True)["ccc"])
    lines += ["NNLS sensitivity to the signature genes (Monaco CCC, same reference; the tables above use 50 per "
              "type, fixed before looking):", ""]
    lines += _table(["signature genes", "n genes", "Monaco CCC"], [[a, b, _f(c)] for a, b, c in sens])

    # --- Fadista ---
    res = _task_results(outputs, "fadista", "islet", methods)
    scores["fadista"] = {m: score_hba1c(tasks["fadista"], r["proportions"]) for m, r in res.items()}
    lines += ["## Fadista islets: predicted beta-cell fraction vs HbA1c", "",
              "Pearson r across donors (a lower, i.e. more negative, r is the expected biology: beta-cell loss with "
              "rising HbA1c).", ""]
    lines += _table(["method", "r", "p", "n"],
                    [[LABELS[m], _f(s["r"]), f"{s['p']:.2g}" if np.isfinite(s["p"]) else "n/a", s["n"]]
                     for m, s in scores["fadista"].items()])

    # --- GEPs ---
    lines += ["## Cell-type expression (GEPs)", ""]
    for task in ("pbmc_pseudo", "xin_pseudo"):
        res = _task_results(outputs, task, tasks[task]["group"], methods)
        common = _common_genes(res, tasks[task]["genes"])
        types = list(tasks[task]["truth"].columns)
        hr = tasks[task]["hr_samples"]
        g_all = score_gep_pseudo(tasks[task], res, common)
        g_hr = score_gep_pseudo(tasks[task], res, common, subset=hr)
        scores[f"gep_{task}"] = g_all
        scores[f"gep_{task}_hr"] = g_hr
        lines += [f"**{task}**: log1p GEP vs log1p truth on the genes expressed in the type (mean truth CPM >= 10) "
                  f"among the {len(common)} genes every GEP method outputs; samples with >= 5 cells of the type. "
                  "*gene r* = per-gene Pearson r across samples, averaged over genes then types (how well the "
                  "sample-to-sample variation of a type's expression is recovered); *profile r* = per-sample Pearson "
                  "r across genes, averaged (the profile's shape). "
                  f"First on the {len(hr)} samples TAPE's high-resolution mode was run on, then on all "
                  f"{len(tasks[task]['truth'])} held-out samples (methods that ran on all of them).", ""]
        lines += _table(["method", f"gene r ({len(hr)} samples)", f"profile r ({len(hr)})",
                         f"gene r (all {len(tasks[task]['truth'])})", "profile r (all)"] +
                        [f"gene r {t} (all)" for t in types],
                        [[GEP_LABELS.get(m, m), _f(s_["mean_r"]), _f(s_["profile_r"]),
                          _f(g_all.get(m, {}).get("mean_r")), _f(g_all.get(m, {}).get("profile_r"))] +
                         [_f(g_all.get(m, {}).get("per_type", {}).get(t, (np.nan,))[0]) for t in types]
                         for m, s_ in g_hr.items()])
    res = _task_results(outputs, "monaco", "pbmc", methods)
    common = _common_genes(res, [g for g in tasks["pbmc_pseudo"]["genes"]])
    ab = score_gep_abis(tasks["monaco"], res, common)
    scores["gep_abis"] = ab
    own = {m: score_gep_abis(tasks["monaco"], {m: r}, list(r["gep_genes"])) for m, r in res.items()
           if r.get("gep") is not None}
    lines += [f"**Monaco vs ABIS sorted-cell signature**: for each coarse type, Pearson r across a marker panel "
              "(the top 25 ABIS markers per type) between the log1p predicted GEP of each donor and the log1p ABIS "
              "profile of that type (ABIS fine columns averaged with weights = mean flow fraction), averaged over the "
              f"12 donors. *Common panel*: markers among the genes every GEP method outputs ({len(ab['panel'])} genes; "
              "BLUE's pretrained output genes overlap the pbmc3k genes only partly). *Own panel*: markers among the "
              "genes that method outputs. TAPE's GEPs are on its own log + MinMax scale (used as is).", ""]
    lines += _table(["method", "mean r (common panel)"] + SCORED_PBMC + ["mean r (own panel)", "own panel genes"],
                    [[GEP_LABELS.get(m, m), _f(s_["mean_r"])] + [_f(s_["per_type"].get(t)) for t in SCORED_PBMC] +
                     [_f(own[m]["methods"][m]["mean_r"]), len(own[m]["panel"])]
                     for m, s_ in ab["methods"].items()])

    # --- Cost ---
    lines += ["## Cost", "",
              "Training = simulation + fitting on the pbmc3k training split (NNLS/nu-SVR: building the signature). "
              "Inference = trained model to results for n pseudo-bulk samples (the 100 held-out samples tiled), "
              "wall-clock; TAPE's overall mode includes its adaptive stage; NNLS/nu-SVR include the closed-form GEPs; "
              "BLUE's `deconvolve` returns fractions and GEPs together. Peak RSS = `ru_maxrss` of the method's "
              "worker process (pbmc group: training, both bulks and all timing runs).", ""]
    cost_rows = []
    cost_series = {}
    for m in methods:
        o = outputs["pbmc"].get(m)
        if not o or o.get("failed"):
            continue
        pb = o["bulks"].get("pbmc_pseudo", {})
        c = pb.get("cost", {})
        c = _with_estimates(c)
        cost_series[LABELS[m]] = {n: v for n, (v, _) in c.items()}
        cost_rows.append([LABELS[m], _f(o["train_s"], 1)] +
                         [(f"~{c[str(n)][0]:.0f} (est.)" if c[str(n)][1] else _f(c[str(n)][0], 2)) if str(n) in c
                          else "n/a" for n in COST_SIZES] + [_f(o["peak_rss_mb"], 0)])
        if m == "tape" and pb.get("gep_per_sample_s"):
            per = pb["gep_per_sample_s"]
            n_hr = len(tasks["pbmc_pseudo"]["hr_samples"])
            cost_series["TAPE high-res (GEPs)"] = {str(n): per * n for n in COST_SIZES}
            cost_rows.append(["TAPE high-resolution (GEPs)", "(same)"] +
                             [f"~{per * n:.0f} (est.)" for n in COST_SIZES] + ["(same)"])
            scores["tape_hr_per_sample_s"] = (per, n_hr)
    lines += _table(["method", "training s", "100 samples s", "1,000 s", "10,000 s", "peak RSS MB"], cost_rows)
    if "tape_hr_per_sample_s" in scores:
        per, n_hr = scores["tape_hr_per_sample_s"]
        lines += [f"TAPE's high-resolution mode adapts the network to each sample separately; it was timed on the "
                  f"{n_hr} GEP samples ({per:.1f} s per sample) and the 100 / 1,000 / 10,000 figures are that per-sample "
                  "time times n (estimates, marked est.; the mode's cost is linear in n by construction).", ""]
    islet_rows = []
    for m in methods:
        o = outputs["islet"].get(m)
        if o and not o.get("failed"):
            islet_rows.append([LABELS[m], _f(o["train_s"], 1), _f(o["peak_rss_mb"], 0)])
    lines += ["Islet group (Xin reference):", ""] + _table(["method", "training s", "peak RSS MB"], islet_rows)

    # --- Notes ---
    lines += ["## Notes", ""]
    for group in ("pbmc", "islet"):
        for m in methods:
            o = outputs[group].get(m)
            if o is None:
                continue
            if o.get("failed"):
                lines.append(f"- {group} / {LABELS[m]}: FAILED or not run: {o['failed']}")
            else:
                if o.get("notes"):
                    lines.append(f"- {group} / {LABELS[m]}: {o['notes']}")
                for name, r in o["bulks"].items():
                    if r.get("failed"):
                        lines.append(f"- {name} / {LABELS[m]}: NOT RUN: {r['failed'][:300]}")
    for task in ("monaco", "pbmc_pseudo"):
        if "blue" in scores.get(task, {}):
            mapping = scores[task]["blue"]["mapping"]
            lines.append(f"- BLUE cell types -> scored types ({task}): " +
                         ", ".join(f"{k} -> {v if v else '(not scored)'}" for k, v in mapping.items()))
    lines.append("")
    files = _plots(scores, tasks, methods, outdir, cost_series)
    lines += ["## Plots", ""] + [f"![{f}]({f})" for f in files] + [""]
    lines += ["## Earlier figures (not from this run)", "",
              "Source: single runs of the same peers on this machine in issue 6 (scTAPE defaults, full references, "
              "6 coarse types), recorded in the first bench/results/peers.md; kept for comparison only.", ""]
    lines += _table(["cohort", "method", "earlier value"],
                    [[cohort, LABELS[m], _f(v)] for (cohort, m), v in REFERENCE_POINTS.items()])
    path = outdir / "peers.md"
    path.write_text("\n".join(lines))
    (outdir / "peers_scores.json").write_text(json.dumps(
        {t: {m: {k: v for k, v in s.items() if k in ("ccc", "r", "rmse", "p", "n", "mean_r")} for m, s in d.items()}
         for t, d in scores.items() if isinstance(d, dict) and t not in ("gep_abis",)}, indent=1, default=float))
    return path


PUBLISHED_HEADER = "## Published runs (issue 21)"


def published_section() -> list[str]:
    """The published peer predictions on SDY67 and Monaco (each tool's own run with its authors' reference, from
    the DISSECT paper's figure data) scored like the shipped BLUE ``pbmc`` model as a user runs it (its default:
    adapted to the cohort), all on the five groups B, CD4 T, CD8 T, NK, monocytes, renormalised."""
    import warnings

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cohort_baseline import GROUPS, cohorts, five, published_rows, score

    from blue_core.engine.inference import deconvolve
    from blue_core.io import read_bulk
    from blue_core.engine.model import load_model

    model = load_model("pbmc")
    rows = []
    for cohort, (path, truth, suffix) in cohorts().items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = deconvolve(read_bulk(path), model)
        adapted = "adapted" if result.input_report["adaptation"]["ran"] else "not adapted"
        rows.append({"cohort": cohort, "method": f"BLUE pbmc (shipped, {adapted})", "kind": "this repo",
                     **score(truth, five(result.proportions, {}))})
        rows += published_rows(cohort, truth, suffix)
    lines = [PUBLISHED_HEADER, "",
             "Written by `python bench/peers.py --published` (this section only). 'published run' = the tool's own run "
             "with its authors' reference (DISSECT paper figure data, Khatri et al. 2024, imsb-uke/deconvolution, MIT; "
             "`../shared/data/pbmc/published_peer_predictions/`), not a same-reference comparison like the tables "
             "above. Five groups, prediction and flow truth renormalised over them; CCC over all sample x type pairs; "
             "bias = mean(predicted - truth).", "",
             "| cohort | method | kind | n | CCC | " + " | ".join(f"bias {g}" for g in GROUPS) + " |",
             "|---" * (5 + len(GROUPS)) + "|"]
    for r in rows:
        lines.append(f"| {r['cohort']} | {r['method']} | {r['kind']} | {r['n']} | {r['ccc']:.2f} | "
                     + " | ".join(f"{r[f'bias {g}']:+.2f}" for g in GROUPS) + " |")
    return lines + [""]


def write_published(outdir: Path) -> Path:
    """Replace (or append) the published-runs section of peers.md, leaving the rest of the report as it was."""
    return replace_section(outdir / "peers.md", PUBLISHED_HEADER, published_section())


BAYESPRISM_HEADER = "## BayesPrism (issue 25)"


def bayesprism_section(outdir: Path) -> list[str]:
    """Why BayesPrism has no row (or that it has one), from ``bayesprism_cost.json`` (``bench/bayesprism_cost.py``)."""
    path = outdir / "bayesprism_cost.json"
    if not path.is_file():
        return [BAYESPRISM_HEADER, "", "Not measured yet: run `.bayesprism-venv/bin/python bench/bayesprism_cost.py`.", ""]
    cost = json.loads(path.read_text())
    over = [r for r in cost["tasks"] if not r["within_30_min"]]
    lines = [BAYESPRISM_HEADER, ""]
    if over:
        lines.append(
            f"**No BayesPrism row.** The issue admits it if its Python port (`bayesprism` {cost['bayesprism_version']}; "
            "the older `pybayesprism` 0.1.0 was not tried) runs on these cohorts within 30 min each. It does "
            f"not here: its Gibbs sampler loops in Python over samples x iterations x genes, "
            f"{cost['s_per_sample_iteration'] * 1e3:.0f} ms per sample and chain iteration on the pbmc group's "
            f"{cost['genes']:,} genes (measured on {cost['measured_samples']} Monaco samples at chains "
            f"{' and '.join(cost['measured_s'])}). At the port's default chain ({cost['default_chain']:,}) that is "
            + ", ".join(f"{r['task']} ~{r['estimated_min']:,.0f} min" for r in cost["tasks"])
            + " on one thread. Shortening the chain would not be BayesPrism's method; the GEP comparison BayesPrism "
            "stands for is carried by its closed-form expectation E[Z|X] (the NNLS and nu-SVR GEP rows above). "
            "Source: [bayesprism_cost.md](bayesprism_cost.md).")
    else:
        lines.append("BayesPrism runs within 30 min on every task ([bayesprism_cost.md](bayesprism_cost.md)); run "
                     "`python bench/peers.py --methods nnls,svr,tape,scaden,bayesprism,blue` for its rows.")
    return lines + [""]


def write_bayesprism(outdir: Path) -> Path:
    """Replace (or append) the BayesPrism section of peers.md, leaving the rest of the report as it was."""
    return replace_section(outdir / "peers.md", BAYESPRISM_HEADER, bayesprism_section(outdir))
