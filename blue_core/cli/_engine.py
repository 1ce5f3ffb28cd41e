"""``blue simulate``, ``blue train``, ``blue deconvolve`` and ``blue models``.

User errors raise ``BlueInputError`` / ``BlueModelError``; the dispatcher in ``cli/__init__.py`` prints
them as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

from ..engine.config import GeneSelection, GepEstimator, SimulationConfig, TrainConfig
from ..exceptions import BlueInputError, BlueWarning

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _progress_bar(description: str) -> Iterator[Callable[[float, str], None]]:
    """A tqdm bar on stderr driven by a ``progress(fraction, message)`` callback."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=description, file=sys.stderr, leave=False, disable=None,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def update(fraction: float, message: str) -> None:
        bar.n = int(round(1000 * min(max(fraction, 0.0), 1.0)))
        bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def register(subparsers: Any) -> None:
    """Add the ``simulate``, ``train``, ``deconvolve`` and ``models`` sub-commands."""
    s = subparsers.add_parser(
        "simulate",
        help="simulate pseudo-bulk samples with known proportions from a single-cell reference",
        description=(
            "Draws cell-type proportions (Dirichlet, dominant-type and sparse samples), draws that many cells "
            "of each type from the reference and sums their counts. Writes OUT/bulk.csv.gz (genes x samples, "
            "summed counts; `blue deconvolve OUT` reads it), OUT/truth.csv (sample x cell-type fractions) and "
            "OUT/profiles.h5ad (per-cell-type CPM profile of each sample, one layer per cell type)."
        ),
    )
    s.add_argument("reference", metavar="REFERENCE.h5ad", help="single-cell reference (cells x genes, raw counts)")
    s.add_argument("--out", metavar="DIR", required=True, help="output folder (written completely or not at all)")
    s.add_argument("--overwrite", action="store_true", help="replace what is already in OUT")
    s.add_argument("--n-samples", type=int, default=100, help="number of pseudo-bulks (default 100)")
    s.add_argument("--cells-per-sample", type=int, default=500, help="cells per pseudo-bulk (default 500)")
    _reference_keys(s)
    _simulation_options(s)
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.set_defaults(func=_run_simulate)

    t = subparsers.add_parser(
        "train",
        help="train a BLUE model on a single-cell reference (or a recipe)",
        description=(
            "Trains a BLUE model on pseudo-bulk simulated from REFERENCE.h5ad and saves it to OUT "
            "(model.safetensors + model.json). With --recipe FILE, builds the reference and settings from a "
            "recipe (as for the pretrained models) instead."
        ),
    )
    t.add_argument("reference", metavar="REFERENCE.h5ad", nargs="?", help="single-cell reference (raw counts)")
    t.add_argument("--recipe", metavar="FILE", help="a training recipe (TOML); replaces REFERENCE and options")
    t.add_argument("--out", metavar="DIR", required=True, help="directory to save the model in")
    t.add_argument("--overwrite", action="store_true", help="replace a model already in OUT")
    t.add_argument("--bank-only", action="store_true",
                   help="with --recipe: keep the trained model in OUT and only (re)build its adaptation bank "
                        "(the pseudo-bulks cohort adaptation mixes with); the weights are not changed")
    _reference_keys(t)
    t.add_argument("--name", default=None, help="model name (default: the OUT folder name)")
    t.add_argument("--tissue", default=None, help="tissue written to the model card")
    t.add_argument("--description", default="", help="description written to the model card")
    t.add_argument("--input-panel", metavar="FILE", default=None,
                   help="bulk file whose genes restrict the input genes (e.g. a cohort with a gene panel)")
    genes, sim, tr = GeneSelection(), SimulationConfig(), TrainConfig()  # the defaults live in the configs
    t.add_argument("--n-markers", type=int, default=genes.n_markers,
                   help=f"input marker genes per cell type (default {genes.n_markers})")
    t.add_argument("--n-output-genes", type=int, default=genes.n_output_genes,
                   help=f"maximum output (GEP) genes (default {genes.n_output_genes})")
    t.add_argument("--n-samples", type=int, default=sim.n_samples, help=f"training pseudo-bulks (default {sim.n_samples})")
    t.add_argument("--cells-per-sample", type=int, default=sim.cells_per_sample,
                   help=f"cells per pseudo-bulk (default {sim.cells_per_sample})")
    _simulation_options(t)
    t.add_argument("--epochs", type=int, default=tr.epochs, help=f"maximum epochs of the GEP branch (default {tr.epochs})")
    t.add_argument("--proportion-epochs", type=int, default=tr.proportion_epochs,
                   help=f"maximum epochs of the proportion branch (default {tr.proportion_epochs})")
    t.add_argument("--batch-size", type=int, default=tr.batch_size, help=f"batch size (default {tr.batch_size})")
    t.add_argument("--lr", type=float, default=tr.lr, help=f"Adam learning rate (default {tr.lr:g})")
    t.add_argument("--patience", type=int, default=tr.patience,
                   help=f"early-stopping patience in epochs (default {tr.patience})")
    t.add_argument("--seed", type=int, default=tr.seed, help=f"random seed (default {tr.seed})")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    t.set_defaults(func=_run_train)

    d = subparsers.add_parser(
        "deconvolve",
        help="cell-type proportions and GEPs of bulk samples",
        description=(
            "Deconvolves BULK (csv/tsv/txt(.gz), xlsx, h5ad or a sample cohort directory such as "
            "sample_data/monaco_pbmc) with a model. Writes OUT/proportions.csv (first column `sample`), "
            "OUT/fit.csv (per-sample fit score and poorly_explained flag) and OUT/expression.h5ad (GEPs in CPM, "
            "one layer per cell type)."
        ),
    )
    d.add_argument("bulk", metavar="BULK", help="bulk expression file or sample cohort directory")
    d.add_argument("--model", required=True, metavar="NAME_OR_DIR", help="model name (see `blue models`) or directory")
    d.add_argument("--out", metavar="DIR", required=True,
                   help="output folder (created; written completely or not at all)")
    d.add_argument("--overwrite", action="store_true", help="replace a result already in OUT")
    d.add_argument("--batch-size", type=int, default=256, help="samples per forward pass (default 256)")
    d.add_argument("--adapt", choices=["auto", "on", "off"], default=None,
                   help="cohort adaptation: fine-tune a copy of the model's networks on this cohort before "
                        "estimating (on: refuse a cohort too small to adapt on; auto: adapt when the cohort is "
                        "large enough; off: the shipped networks as they are). Default: the model's "
                        "(auto for shipped models where adaptation was chosen on real cohorts, else off)")
    d.add_argument("--gep-estimator", choices=list(get_args(GepEstimator)), default=None,
                   help="which estimator produces the GEPs (default: the model's, named in its card; see "
                        "blue_core.engine.gep_estimators). Proportions and fit scores do not change")
    d.add_argument("--log-base", choices=["auto", "2", "10", "e"], default="auto",
                   help="base of log-transformed input (default auto: log2, or log10 when the largest value is "
                        "below 7; the input report says which)")
    big = d.add_argument_group(
        "archive scale", "A file too large for memory (h5ad, ARCHS4-layout HDF5, zarr, or samples x genes CSV/TSV) is "
        "read in sample chunks with bounded memory, on its own: the memory budget (BLUE_MEMORY_BUDGET_MB) decides, "
        "and the first line printed says which path ran and why. OUT gets the same files with the same numbers; an "
        "interrupted run resumes where it stopped. The options below ask for the chunked path.")
    big.add_argument("--chunk-size", type=int, default=None, help="samples per chunk (default 5,000; memory grows with it)")
    big.add_argument("--no-gep", action="store_true", help="do not write the GEPs (no expression.h5ad)")
    big.add_argument("--gep-dtype", choices=["float32", "float16"], default="float32",
                     help="float16 halves expression.h5ad; its layers then hold log1p(CPM)")
    big.add_argument("--cell-types", nargs="+", default=None, help="store the GEPs of these cell types only")
    big.add_argument("--genes", nargs="+", default=None, help="store the GEPs of these output genes only")
    big.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="run every chunk as a task on a Dask cluster: its scheduler's address (tcp://host:8786; "
                          "workers must see BULK and OUT), or 'local' for two worker processes on this machine")
    d.set_defaults(func=_run_deconvolve)

    m = subparsers.add_parser(
        "models",
        help="list the available models",
        description="Lists the models found in $BLUE_MODELS_DIR and the repository's pretrained/ folder.",
    )
    m.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    m.set_defaults(func=_run_models)


def _reference_keys(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cell-type-key", default="cell_type", help="obs column with cell-type labels")
    parser.add_argument("--donor-key", default="donor", help="obs column with donors (optional)")


def _simulation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gene-noise-sd", type=float, default=0.0,
                        help="SD (log) of a per-gene multiplicative factor shared by a batch of samples "
                             "(platform shift; default 0)")
    parser.add_argument("--sample-noise-sd", type=float, default=0.0,
                        help="SD (log) of a per-gene, per-sample multiplicative factor (default 0)")
    parser.add_argument("--sparse-fraction", type=float, default=0.3,
                        help="fraction of samples with some cell types absent (default 0.3)")
    parser.add_argument("--dominant-fraction", type=float, default=0.2,
                        help="fraction of samples dominated by one cell type (default 0.2)")


def _simulation_kwargs(args: argparse.Namespace) -> dict[str, float]:
    return dict(gene_noise_sd=args.gene_noise_sd, sample_noise_sd=args.sample_noise_sd,
                sparse_fraction=args.sparse_fraction, dominant_fraction=args.dominant_fraction)


def _read_reference(args: argparse.Namespace):  # noqa: ANN202
    from ..io.reference import read_reference

    path = Path(args.reference)
    if not path.is_file():
        raise BlueInputError(f"reference file {path} not found; pass the path of an .h5ad single-cell reference.")
    donor_key = args.donor_key or None
    return read_reference(path, cell_type_key=args.cell_type_key, donor_key=donor_key)


def _run_simulate(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..io.files import atomic_directory, check_output_folder, write_csv
    from ..engine.simulation import simulate

    check_output_folder(args.out, overwrite=args.overwrite, what="--out")
    reference = _read_reference(args)
    with _progress_bar("simulate") as progress:
        pb = simulate(reference, args.n_samples, cells_per_sample=args.cells_per_sample, seed=args.seed,
                      progress=progress, **_simulation_kwargs(args))
    out = Path(args.out)
    bulk = pd.DataFrame(pb.bulk.T, index=pd.Index(pb.genes, name="gene"), columns=pb.proportions.index)
    with atomic_directory(out, overwrite=args.overwrite, what="--out") as tmp:
        bulk.to_csv(tmp / "bulk.csv.gz", float_format="%.6g")
        write_csv(pb.proportions.rename_axis("sample"), tmp / "truth.csv")
        pb.profiles_anndata().write_h5ad(tmp / "profiles.h5ad", compression="gzip")
    print(f"wrote {pb.n_samples} pseudo-bulks ({len(pb.cell_types)} cell types, {len(pb.genes):,} genes) to {out}")
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from ..engine.model import save_model

    from ..io.files import check_model_name

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BlueInputError(f"--out {out} is a file, not a folder; choose a folder to save the model in.")
    if args.bank_only:
        return _rebuild_bank(args, out)
    if (out / "model.json").exists() and not args.overwrite:
        raise BlueInputError(f"{out} already holds a model; choose another --out or pass --overwrite.")
    if not args.recipe:
        check_model_name(args.name or out.name, what="--name" if args.name else "model name (from --out)")
    if args.recipe:
        if args.reference:
            raise BlueInputError("pass either REFERENCE.h5ad or --recipe FILE, not both.")
        try:
            from ..engine.recipes import train_from_recipe
        except ImportError as err:
            raise BlueInputError(
                "training from a recipe needs blue_core.engine.recipes, which is not installed in this version; "
                "train from a reference file instead (blue train REFERENCE.h5ad --out DIR)."
            ) from err
        if not Path(args.recipe).is_file():
            raise BlueInputError(f"recipe file {args.recipe} not found; pass the path of a recipe TOML file.")
        with _progress_bar("train") as progress:
            model = train_from_recipe(args.recipe, progress=progress)
    else:
        if not args.reference:
            raise BlueInputError("give a single-cell reference (blue train REFERENCE.h5ad --out DIR) or --recipe FILE.")
        from ..engine.training import train_model

        reference = _read_reference(args)
        panel = None
        if args.input_panel:
            from ..io.bulk import read_bulk

            panel = list(read_bulk(args.input_panel).var_names)
        with _progress_bar("train") as progress:
            model = train_model(
                reference,
                genes=GeneSelection(input_panel=panel, n_markers=args.n_markers, n_output_genes=args.n_output_genes),
                simulation=SimulationConfig(n_samples=args.n_samples, cells_per_sample=args.cells_per_sample,
                                            options=_simulation_kwargs(args)),
                training=TrainConfig(epochs=args.epochs, proportion_epochs=args.proportion_epochs,
                                     batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=args.seed,
                                     threads=args.threads),
                name=args.name or out.name,
                tissue=args.tissue, description=args.description,
                provenance={"reference_file": str(args.reference), "command": "blue " + " ".join(sys.argv[1:])},
                progress=progress,
            )
    save_model(model, out, overwrite=args.overwrite)
    v = model.card.get("validation", {})
    print(f"saved {model!r} to {out}: validation proportions CCC {v.get('proportion_ccc', float('nan')):.3f}, "
          f"trained in {model.card.get('training_time_s', float('nan')):.0f} s")
    return 0


def _rebuild_bank(args: argparse.Namespace, out: Path) -> int:
    """``blue train --recipe FILE --out DIR --bank-only``: add the adaptation bank to a trained model."""
    from ..engine.model import load_model, save_model
    from ..engine.recipe_data import read_recipe
    from ..engine.card import bank_rule
    from ..engine.recipes import recipe_bank

    if not args.recipe or not Path(args.recipe).is_file():
        raise BlueInputError("--bank-only needs --recipe FILE (the recipe the model in --out was trained with).")
    if not (out / "model.json").is_file():
        raise BlueInputError(f"--bank-only needs a trained model in --out; {out} holds no model.json.")
    model = load_model(out)  # a Path: always the folder, never an installed name
    recipe = read_recipe(args.recipe)
    if recipe.get("name") != model.name:
        raise BlueInputError(f"the recipe is for model {recipe.get('name')!r} but {out} holds {model.name!r}.")
    model.adaptation_bank = recipe_bank(recipe, model)
    model.card["adaptation_bank"] = bank_rule("recipe")
    save_model(model, out, overwrite=True)
    print(f"wrote the adaptation bank of {model.name!r} ({model.adaptation_bank.n_samples} pseudo-bulks) to {out}")
    return 0


def _run_streaming(args: argparse.Namespace, model: Any, reason: str) -> int:
    """``blue deconvolve`` of a file read in sample chunks (``engine.streaming``): the in-memory files, on disk."""
    from ..engine.chunk_core import NO_TISSUE_CHECKS
    from ..engine.run_plan import DEFAULT_CHUNK_SIZE
    from ..engine.streaming import deconvolve_chunked, deconvolve_dask

    chunk = int(args.chunk_size or DEFAULT_CHUNK_SIZE)
    options = dict(out=args.out, chunk_size=chunk, gep=not args.no_gep, gep_dtype=args.gep_dtype,
                   cell_types=args.cell_types, genes=args.genes, overwrite=args.overwrite, batch_size=args.batch_size,
                   log_base=args.log_base, reason=reason, **_adapt_option(args.adapt))
    with _progress_bar("deconvolve") as progress:
        if args.scheduler:
            address = None if args.scheduler == "local" else args.scheduler
            result = deconvolve_dask(args.bulk, model, scheduler=address, progress=progress, **options)
        else:
            result = deconvolve_chunked(args.bulk, model, progress=progress, **options)
    resumed = f", {result.n_resumed} resumed" if result.n_resumed else ""
    where = f" on Dask ({args.scheduler})" if args.scheduler else ""
    print(f"deconvolved {result.n_samples:,} samples with {model.name!r} in {result.n_chunks} chunks{resumed}{where}; "
          "wrote " + ", ".join(f"{args.out}/{f}" for f in result.files))
    counts = result.verdicts
    print(f"trust verdict: {counts.get('ok', 0):,} ok, {counts.get('caution', 0):,} caution (per sample in "
          f"{args.out}/fit.csv); {NO_TISSUE_CHECKS}.", file=sys.stderr)
    return 0


def _run_deconvolve(args: argparse.Namespace) -> int:
    from ..io.files import check_output_folder
    from ..engine.inference import deconvolve
    from ..io.bulk import read_bulk
    from ..io.report import input_report_lines
    from ..engine.model import load_model
    from ..engine.run_plan import plan_run

    source = Path(args.bulk)
    if not source.exists():
        raise BlueInputError(f"bulk file {source} not found; pass a bulk expression file or a sample cohort folder.")
    check_output_folder(args.out, overwrite=args.overwrite, what="--out")  # before any work is done
    model = load_model(args.model)
    if args.gep_estimator is not None:
        from ..engine.gep_estimators import with_estimator

        model = with_estimator(model, args.gep_estimator)
    where = "installed model" if model.source == "installed" else "model folder"
    print(f"model: {where} {model.name!r} ({model.path})", file=sys.stderr)
    forced = [flag for flag, given in (("--chunk-size", args.chunk_size), ("--scheduler", args.scheduler),
                                       ("--gep-dtype float16", args.gep_dtype != "float32"),
                                       ("--cell-types", args.cell_types), ("--genes", args.genes)) if given]
    if forced:
        mode, reason = "stream", f"{source.name}: {', '.join(forced)} asked for the chunked path"
    else:
        plan = plan_run(source, model, gep=not args.no_gep)  # the one memory-or-stream rule
        mode, reason = plan.mode, plan.reason
    print(f"read: {'in sample chunks' if mode == 'stream' else 'in memory'} ({reason})", file=sys.stderr)
    if mode == "stream":
        return _run_streaming(args, model, reason)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bulk = read_bulk(source, log_base=args.log_base)
        with _progress_bar("deconvolve") as progress:
            result = deconvolve(bulk, model, batch_size=args.batch_size, progress=progress,
                                **_adapt_option(args.adapt))
    seen = [str(w.message) for w in caught if issubclass(w.category, BlueWarning)]
    summary, *messages = input_report_lines(result.input_report, seen=seen)
    print(f"input: {summary}", file=sys.stderr)
    for text in messages:
        print(f"input: {text}", file=sys.stderr)
    from ..analysis.trust import assess

    trust = assess(bulk, result, model=model)
    trust.annotate(result).write(args.out, overwrite=args.overwrite, gep=not args.no_gep)  # fit.csv / h5ad obs: verdicts
    print(f"trust: {trust.summary}", file=sys.stderr)
    for cause, n in (trust.checks["cause"].value_counts().items() if len(trust.checks) else []):
        print(f"trust: {n} sample(s): {cause}", file=sys.stderr)
    if trust.counts["wrong input"]:
        _suggest_model(bulk, model)
    print(f"deconvolved {len(result.proportions)} samples with {model.name!r} "
          f"({result.input_report['n_model_genes_matched']:,}/{result.input_report['n_model_genes']:,} model genes "
          f"found; {trust.counts['ok']} ok, {trust.counts['caution']} caution, {trust.counts['wrong input']} wrong "
          f"input); wrote {args.out}/proportions.csv, fit.csv, {'' if args.no_gep else 'expression.h5ad, '}provenance.json")
    return 0


def _adapt_option(value: str | None) -> dict[str, Any]:
    """``--adapt auto|on|off`` as ``deconvolve`` keywords (nothing: the library's default)."""
    return {} if value is None else {"adapt": {"auto": "auto", "on": True, "off": False}[value]}


def _suggest_model(bulk: Any, chosen: Any) -> None:
    """After a 'wrong input' verdict: the installed model the data recommend (``trust.recommend_model``), printed
    as the option to rerun with."""
    from ..engine.model import load_installed, load_model
    from ..analysis.trust import recommend_model

    models = load_installed(loader=lambda name: chosen if name == chosen.name else load_model(name))
    ranking = recommend_model(bulk, models)
    best = ranking.iloc[0] if len(ranking) else None
    if best is None or not bool(best["readable"]):
        return
    if not bool(best["fits"]):
        print("trust: no installed model fits these data (none of their tissues is what the samples look like); "
              "read the result with caution or train a model on a reference of this tissue", file=sys.stderr)
    elif best["model"] != chosen.name:
        print(f"trust: the data recommend another model: rerun with --model {best['model']} ({best['tissue']}; "
              f"{best['reason']})", file=sys.stderr)


def _run_models(args: argparse.Namespace) -> int:
    from ..engine.store import list_models

    table = list_models()
    if table.empty:
        print("no models found (looked in $BLUE_MODELS_DIR and pretrained/)")
        return 0
    shown = table.drop(columns=["path"]) if not args.csv else table
    print(shown.to_csv(index=False) if args.csv else shown.to_string(index=False))
    return 0
