"""Security and data-safety cases of issue 9, before and after the fix, side by side in one run.

Every case is a short script run in its own Python process (address space capped, so the "before"
code cannot take the shared machine down) against two source trees: the commit before the fix
(``--before``, exported with ``git archive``) and the working tree. Each prints its outcome and its
own peak memory. Then a real Streamlit server of the working tree is started, the gzip bomb is
uploaded through Chromium, and the server's peak memory (VmHWM) is read from /proc.

    python bench/security.py                      # writes bench/results/security.md (+ .json)
    python bench/security.py --before 6717ba1 --out /tmp/results --skip-server

Needs the project venv; the server part needs Debian's chromium and playwright.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "_work" / "security"
CAP_BYTES = 8 << 30  # address-space cap of every case process
BOMB_INFLATED = 2 << 30  # the bomb: 2 GiB of CSV text

PRELUDE = '''
import json, os, resource, sys, warnings
warnings.simplefilter("ignore")
TREE, WORK = sys.argv[1], sys.argv[2]
sys.path[:0] = [TREE, os.path.join(TREE, "tests")]
import blue_core
assert blue_core.__file__.startswith(TREE), blue_core.__file__
def done(outcome, safe):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"outcome": str(outcome)[:220], "safe": bool(safe), "peak_mb": round(peak)}))
    sys.exit(0)
def clear(err):
    return type(err).__name__ in ("BlueInputError", "BlueModelError")
def tiny(name="tiny", seed=0):
    from _engine_data import synthetic_reference
    from blue_core.training import train_model
    return train_model(synthetic_reference(n_cells=150, n_genes=60, seed=1), name=name, seed=seed,
        n_samples=64, n_validation_samples=32, cells_per_sample=30, epochs=2, proportion_epochs=2, batch_size=16,
        network=dict(hidden=16, signal_length=16, base_channels=2, depth=2, dropout=0.3), n_markers=10, n_output_genes=40)
def bulk_csv(path, genes=None):
    import numpy as np, pandas as pd
    genes = genes or [f"GENE{i}" for i in range(60)]
    frame = pd.DataFrame(np.random.default_rng(0).poisson(20, size=(len(genes), 4)), index=genes,
                         columns=[f"S{j}" for j in range(4)])
    frame.rename_axis("gene").to_csv(path)
    return path
def plants():
    """The working tree's planters (tests/_hdf5_plants.py), after the tree under test on sys.path."""
    sys.path.append(os.environ["BENCH_PLANTS"])
    import _hdf5_plants
    return _hdf5_plants
def outside_file(P):
    path = os.path.join(WORK, "server_secret.txt")
    open(path, "wb").write(P.SECRET * 8)
    return path
def leaked(names):
    return [s for s in map(str, names) if "SECRET" in s or "root:x" in s]
def cli(*args):
    import contextlib, io
    from blue_core.cli import main
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    except BaseException as exc:
        import traceback
        return 1, out.getvalue(), err.getvalue() + "Traceback: " + type(exc).__name__ + ": " + str(exc)
    return code, out.getvalue(), err.getvalue()
try:
'''

EPILOGUE = '''
except SystemExit:
    raise
except BaseException as err:
    done(f"{type(err).__name__}: {err}", clear(err))
'''

CASES: list[tuple[str, str, str]] = [
    ("1", "Train page model name is a path (`<tmp>/planted`)", '''
    target = os.path.join(WORK, "planted")
    try:
        model = tiny(name=target)
    except Exception as err:
        done(f"refused before training: {err}", clear(err) and not os.path.exists(target))
    from blue_core import ui
    try:
        ui.model_zip_bytes(model)
    except Exception as err:
        done(f"zip refused: {err}", not os.path.exists(target))
    done("model files written to " + target if os.path.exists(target) else "nothing written outside", not os.path.exists(target))
'''),
    ("2", "gzip bomb (7 MB file inflating to 2 GiB of CSV) read with default limits", '''
    from blue_core.io import read_bulk
    data = open(os.path.join(WORK, "bomb.csv.gz"), "rb").read()
    try:
        read_bulk(data, filename="bomb.csv.gz")
    except MemoryError:
        done("MemoryError at the 8 GB address-space cap (the server process would be exhausted)", False)
    except Exception as err:
        done(f"{type(err).__name__}: {err}", clear(err))
    done("read the whole bomb", False)
'''),
    ("3a", "`blue deconvolve --out` into an existing result", '''
    from blue_core.model import save_model
    save_model(tiny(), os.path.join(WORK, "m"))
    bulk = bulk_csv(os.path.join(WORK, "b.csv"))
    out = os.path.join(WORK, "out")
    cli("deconvolve", bulk, "--model", os.path.join(WORK, "m"), "--out", out)
    open(os.path.join(out, "stale.txt"), "w").write("old")
    code, _, err = cli("deconvolve", bulk, "--model", os.path.join(WORK, "m"), "--out", out)
    if code == 0:
        done("exit 0: the old result was replaced without notice" + (", stale.txt left beside the new files"
             if os.path.exists(os.path.join(out, "stale.txt")) else ""), False)
    done(f"exit {code}: " + err.strip().splitlines()[-1], code == 2 and "overwrite" in err)
'''),
    ("3b", "disk full while writing a result over an old one", '''
    import hashlib, inspect
    import anndata as ad
    from blue_core.inference import deconvolve
    from blue_core.io import read_bulk
    result = deconvolve(read_bulk(bulk_csv(os.path.join(WORK, "b.csv"))), tiny())
    out = os.path.join(WORK, "res")
    result.write(out)
    digest = lambda: {f: hashlib.sha256(open(os.path.join(out, f), "rb").read()).hexdigest() for f in sorted(os.listdir(out))}
    before = digest()
    def disk_full(self, path, **kwargs):
        open(path, "wb").write(b"HDF half")
        raise OSError(28, "No space left on device")
    ad.AnnData.write_h5ad = disk_full
    kwargs = {"overwrite": True} if "overwrite" in inspect.signature(result.write).parameters else {}
    try:
        result.write(out, **kwargs)
    except OSError:
        pass
    after = digest()
    changed = [f for f in before if before[f] != after.get(f)]
    done("previous result intact" if not changed else f"previous result destroyed: {', '.join(changed)} changed", not changed)
'''),
    ("3c", "`blue deconvolve --out` names a file", '''
    from blue_core.model import save_model
    save_model(tiny(), os.path.join(WORK, "m"))
    open(os.path.join(WORK, "afile"), "w").write("x")
    code, _, err = cli("deconvolve", bulk_csv(os.path.join(WORK, "b.csv")), "--model", os.path.join(WORK, "m"),
                       "--out", os.path.join(WORK, "afile"))
    done(f"exit {code}: " + err.strip().splitlines()[-1], code == 2 and "Traceback" not in err)
'''),
    ("4", "two concurrent trainings with seed 7 (+ another thread using the global RNG)", '''
    import hashlib, threading, numpy as np, torch
    def digest(m):
        h = hashlib.sha256()
        for k, v in sorted(m.network.state_dict().items()):
            h.update(v.numpy().tobytes())
        return h.hexdigest()
    solo = digest(tiny(seed=7))
    stop, found = threading.Event(), []
    def noise():
        while not stop.is_set():
            torch.manual_seed(1); torch.rand(64); np.random.seed(2)
    threads = [threading.Thread(target=noise)] + [threading.Thread(target=lambda: found.append(digest(tiny(seed=7)))) for _ in range(2)]
    for t in threads: t.start()
    for t in threads[1:]: t.join()
    stop.set(); threads[0].join()
    same = sum(d == solo for d in found)
    done(f"{same} of 2 concurrent runs identical to the solo seed-7 run", same == 2)
'''),
    ("5a", "model card claims 1.5 M input genes and a 512-wide network (weights of a tiny model)", '''
    import json as j
    from blue_core.model import load_model, save_model
    d = save_model(tiny(), os.path.join(WORK, "m"))
    card = j.load(open(os.path.join(d, "model.json")))
    card["input_genes"] = [f"G{i}" for i in range(1_500_000)]
    card["network"].update(n_input_genes=1_500_000, hidden=512, signal_length=128)
    j.dump(card, open(os.path.join(d, "model.json"), "w"))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        load_model(d)
        done("loaded", False)
    except Exception as err:
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        done(f"{type(err).__name__} after the peak grew by {grew:,.0f} MB: {str(err)[:120]}", clear(err) and grew < 500)
'''),
    ("5b", "model card with `fit_r_threshold: 'high'`", '''
    import json as j
    from blue_core.inference import deconvolve
    from blue_core.io import read_bulk
    from blue_core.model import load_model, save_model
    d = save_model(tiny(), os.path.join(WORK, "m"))
    card = j.load(open(os.path.join(d, "model.json")))
    card["validation"]["fit_r_threshold"] = "high"
    j.dump(card, open(os.path.join(d, "model.json"), "w"))
    deconvolve(read_bulk(bulk_csv(os.path.join(WORK, "b.csv"))), load_model(d))
    done("deconvolved without noticing", False)
'''),
    ("5c", "`--model pbmc` with a folder `./pbmc` in the working directory", '''
    import shutil
    shutil.copytree(os.path.join(TREE, "pretrained", "pancreas"), os.path.join(WORK, "pbmc"))  # a local look-alike
    os.chdir(WORK)
    code, out, err = cli("deconvolve", os.path.join(TREE, "sample_data", "monaco_pbmc"), "--model", "pbmc", "--out", "o")
    used_local = "'pancreas'" in out + err
    done(f"exit {code}: used the " + ("local folder ./pbmc (a pancreas model) silently" if used_local else "installed pbmc model")
         + ("; said so: " + [ln for ln in err.splitlines() if ln.startswith("model:")][0] if "model:" in err else ""),
         code == 0 and not used_local and "model:" in err)
'''),
    ("6a", "h5ad bulk without X", '''
    import anndata as ad, pandas as pd
    from blue_core.io import read_bulk
    path = os.path.join(WORK, "nox.h5ad")
    ad.AnnData(obs=pd.DataFrame(index=["S1", "S2"]), var=pd.DataFrame(index=["CD4", "CD8A"])).write_h5ad(path)
    read_bulk(path)
    done("read", False)
'''),
    ("6b", "h5ad reference with text in X", '''
    import anndata as ad, h5py, numpy as np, pandas as pd
    from blue_core.io import read_reference
    path = os.path.join(WORK, "text.h5ad")
    ad.AnnData(np.ones((2, 2)), obs=pd.DataFrame({"cell_type": ["a", "b"]}, index=["c1", "c2"]),
               var=pd.DataFrame(index=["CD4", "CD8A"])).write_h5ad(path)
    with h5py.File(path, "r+") as h:
        attrs = dict(h["X"].attrs); del h["X"]
        h.create_dataset("X", data=np.array([[b"a", b"b"], [b"c", b"d"]]))
        for k, v in attrs.items(): h["X"].attrs[k] = v
    read_reference(path)
    done("read", False)
'''),
    ("6c", "samples x genes CSV, 20,000 genes (header line > 128 KiB)", '''
    import numpy as np, pandas as pd
    from blue_core import genes
    from blue_core.io import read_bulk
    symbols = sorted(genes._approved_symbols())[:20000]
    frame = pd.DataFrame(np.random.default_rng(0).poisson(5, size=(3, 20000)), index=["S1", "S2", "S3"], columns=symbols)
    bulk = read_bulk(frame.rename_axis("sample").to_csv().encode(), filename="wide.csv")
    done(f"read {bulk.n_obs} samples x {bulk.n_vars:,} genes", bulk.shape == (3, 20000))
'''),
    ("6d", "genes x samples CSV with 200,000 sample columns", '''
    import numpy as np, pandas as pd
    from blue_core.io import read_bulk
    frame = pd.DataFrame(np.random.default_rng(0).poisson(5, size=(3, 200000)), index=["CD4", "CD8A", "MS4A1"],
                         columns=[f"S{j}" for j in range(200000)])
    bulk = read_bulk(frame.rename_axis("gene").to_csv().encode(), filename="many.csv")
    done(f"read {bulk.n_obs:,} samples x {bulk.n_vars} genes", bulk.shape == (200000, 3))
'''),
    ("7", "CLI on a file with a duplicated gene and two old symbols", '''
    from blue_core.model import save_model
    save_model(tiny(), os.path.join(WORK, "m"))
    genes = ["BAI1", "SDPR"] + [f"GENE{i}" for i in range(2, 59)] + ["GENE3"]
    code, out, err = cli("deconvolve", bulk_csv(os.path.join(WORK, "c.csv"), genes), "--model", os.path.join(WORK, "m"),
                         "--out", os.path.join(WORK, "o"))
    said = [ln for ln in err.splitlines() if "summed" in ln or "renamed" in ln]
    done(f"exit {code}; " + (" | ".join(said) if said else "printed nothing about the changes"), len(said) == 2)
'''),
    ("8", "sample names with a Markdown image/link and an HTML link (Proportions page)", '''
    import json as j
    from streamlit.testing.v1 import AppTest
    from _app_helpers import demo_result, seed
    try:
        from blue_core.engine.result import Deconvolution
    except ImportError:  # a tree from before the house (issue 23)
        from blue_core.inference import Deconvolution
    bad = "![p](http://evil.example/p.png)[click](http://evil.example)<a href='http://evil.example'>x</a>"
    _, model, result, _ = demo_result("monaco_pbmc")
    props = result.proportions.copy(); props.index = [bad + str(i) for i in range(len(props))]
    at = AppTest.from_file(os.path.join(TREE, "pages", "2_Proportions.py"), default_timeout=180)
    seed(at, "monaco_pbmc")
    at.session_state["result"] = Deconvolution(props, result.expression, result.cell_types, result.genes,
                                               result.fit.set_axis(props.index), result.model_name, result.input_report)
    at.session_state["truth"] = None
    at.run()
    md = [e.value for k in ("markdown", "caption", "warning") for e in getattr(at, k) if "](http" in e.value]
    charts = sum("<a href" in j.dumps(j.loads(el.proto.spec)) for el in at.get("plotly_chart"))
    done(f"{len(md)} Markdown elements with a live link/image, {charts} charts with a raw <a href>", not md and not charts)
'''),
    ("9", "identical bytes uploaded as alice.csv, then as bob.csv", '''
    from blue_core import ui
    from blue_core.model import load_model
    data = open(os.path.join(TREE, "sample_data", "monaco_pbmc", "bulk.csv.gz"), "rb").read()
    model = load_model("pbmc")
    a, _ = ui.read_bulk_upload(data, "alice_patients.csv.gz", model.read_genes)
    ui.run_deconvolution(a, "key", model)
    b, _ = ui.read_bulk_upload(data, "bob.csv.gz", model.read_genes)
    rb, _ = ui.run_deconvolution(b, "key", model)
    leak = b"alice" in ui.anndata_bytes(rb.to_anndata())
    done("bob's h5ad download names alice's file" if leak else "bob's download names only bob.csv.gz", not leak)
'''),
    ("11", "parse memory per byte of text: 52 MB CSV, 20,000 genes x 400 samples (sets TEXT_MEMORY_FACTOR)", '''
    import numpy as np, pandas as pd
    from blue_core import genes
    from blue_core.io import read_bulk
    path = os.path.join(WORK, "big.csv")
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.gamma(0.5, 50, size=(20000, 400)).round(3), index=sorted(genes._approved_symbols())[:20000],
                 columns=[f"S{i}" for i in range(400)]).rename_axis("gene").to_csv(path)
    import subprocess
    probe = "import resource,sys; sys.path[:0]=[sys.argv[1]]; import blue_core.io as b, anndata; d=open(sys.argv[2],'rb').read(); " \\
            "r0=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; b.read_bulk(d, filename='x.csv'); " \\
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss-r0)*1024/len(d))"
    factor = float(subprocess.run([sys.executable, "-c", probe, TREE, path], capture_output=True, text=True).stdout.split()[-1])
    done(f"{factor:.1f} bytes of peak memory per byte of text", factor <= 12)
'''),
    ("10a", "UTF-16 text (Excel 'Unicode Text')", '''
    from blue_core.io import read_bulk
    text = open(bulk_csv(os.path.join(WORK, "b.csv"))).read().replace(",", "\\t")
    try:
        bulk = read_bulk(text.encode("utf-16"), filename="unicode.txt")
    except Exception as err:
        done(f"{type(err).__name__} (wrong cause): {err}", False)
    done(f"read {bulk.n_obs} samples x {bulk.n_vars} genes", bulk.shape == (4, 60))
'''),
    ("10b", "xlsx whose formulas have no cached values", '''
    import openpyxl
    from blue_core.io import read_bulk
    book = openpyxl.Workbook(); sheet = book.active
    sheet.append(["gene", "S1", "S2"])
    for g in ("CD4", "CD8A", "MS4A1"): sheet.append([g, "=1+1", "=2*3"])
    path = os.path.join(WORK, "calc.xlsx"); book.save(path)
    try:
        read_bulk(path)
        done("read", False)
    except Exception as err:
        done(f"{type(err).__name__}: {err}", clear(err) and "formula" in str(err))
'''),
]


# Issue 26: cases whose "before" is the last commit before that fix (CASE_BEFORE); the planters live in the working
# tree's tests/_hdf5_plants.py (BENCH_PLANTS), appended to sys.path after the tree under test.
ISSUE26_BEFORE = "0ca3034"
CASES += [
    ("12a", "uploaded h5ad whose `obs/_index` has HDF5 external storage on a server file (bytes, as the upload widget)", '''
    P = plants()
    from blue_core.io import read_bulk
    secret = outside_file(P)
    path = P.plant_external_storage(__import__("pathlib").Path(WORK) / "up.h5ad", secret)
    bulk = read_bulk(open(path, "rb").read(), filename="upload.h5ad")
    done(f"read; sample names hold the server file: {list(bulk.obs_names)[:2]}" if leaked(bulk.obs_names) else "read, nothing leaked",
         not leaked(bulk.obs_names))
'''),
    ("12b", "relative external path (`.streamlit/config.toml` of the server's folder), bytes upload", '''
    P = plants()
    from blue_core.io import read_bulk
    os.makedirs(os.path.join(WORK, ".streamlit")); open(os.path.join(WORK, ".streamlit", "config.toml"), "wb").write(P.SECRET * 8)
    os.chdir(WORK)
    path = P.plant_external_storage(__import__("pathlib").Path(WORK) / "rel.h5ad", ".streamlit/config.toml")
    bulk = read_bulk(open(path, "rb").read(), filename="upload.h5ad")
    done(f"read; sample names hold config.toml: {list(bulk.obs_names)[:2]}" if leaked(bulk.obs_names) else "read, nothing leaked",
         not leaked(bulk.obs_names))
'''),
    ("12c", "h5ad whose `obs` is an HDF5 external link into another file (`blue deconvolve` path)", '''
    P = plants()
    import anndata as ad, pandas as pd, numpy as np
    from pathlib import Path as _P
    from blue_core.io import read_bulk
    other = _P(WORK) / "other.h5ad"
    ad.AnnData(np.ones((4, 60), dtype=np.float32), obs=pd.DataFrame(index=["root:x:0:0:SECRET" + str(i) for i in range(4)]),
               var=pd.DataFrame(index=[f"GENE{j}" for j in range(60)])).write_h5ad(other)
    bulk = read_bulk(P.plant_external_link(_P(WORK) / "link.h5ad", other))
    done(f"read; sample names come from the other file: {list(bulk.obs_names)[:2]}" if leaked(bulk.obs_names) else "read, nothing leaked",
         not leaked(bulk.obs_names))
'''),
    ("12d", "h5ad whose `X` is a virtual dataset over another file", '''
    P = plants()
    import anndata as ad, pandas as pd, numpy as np
    from pathlib import Path as _P
    from blue_core.io import read_bulk
    other = _P(WORK) / "other.h5ad"
    ad.AnnData(np.full((4, 60), 7777.0, dtype=np.float32), obs=pd.DataFrame(index=[f"S{i}" for i in range(4)]),
               var=pd.DataFrame(index=[f"GENE{j}" for j in range(60)])).write_h5ad(other)
    bulk = read_bulk(P.plant_virtual(_P(WORK) / "vds.h5ad", other))
    foreign = bool((bulk.X == 7777.0).all())
    done("read; the matrix is the other file's" if foreign else "read, nothing leaked", not foreign)
'''),
    ("12e", "streaming (`blue deconvolve --chunk-size`) of an h5ad with external storage", '''
    P = plants()
    from pathlib import Path as _P
    try:
        from blue_core.io.chunked import open_bulk
    except ImportError:  # a tree from before the house (issue 23)
        from blue_core.streaming import open_bulk
    secret = outside_file(P)
    source = open_bulk(P.plant_external_storage(_P(WORK) / "s.h5ad", secret))
    done(f"opened; sample names hold the outside file: {source.samples[:2]}" if leaked(source.samples) else "opened, nothing leaked",
         not leaked(source.samples))
'''),
    ("12f", "single-cell reference (Train page) with external storage in `obs/_index`", '''
    P = plants()
    from pathlib import Path as _P
    from blue_core.io import read_reference_obs
    secret = outside_file(P)
    obs = read_reference_obs(open(P.plant_external_storage(_P(WORK) / "r.h5ad", secret), "rb").read(), filename="ref.h5ad")
    done(f"read; cell names hold the outside file: {list(obs.index)[:2]}" if leaked(obs.index) else "read, nothing leaked",
         not leaked(obs.index))
'''),
    ("13", "model card `tissue: ![x](http://host/t.png)` (Data & model page, AppTest)", '''
    import copy, re
    from streamlit.testing.v1 import AppTest
    from blue_studio.state import TRAINED_PREFIX
    model = tiny(name="poisoned")
    model.card = {**copy.deepcopy(model.card), "tissue": "![x](http://evil.example/t.png)",
                  "description": "![x](http://evil.example/d.png)"}
    at = AppTest.from_file(os.path.join(TREE, "pages", "1_Data_and_model.py"), default_timeout=180)
    at.session_state["trained_models"] = {"poisoned": model}
    at.session_state["model_name"] = TRAINED_PREFIX + "poisoned"
    at.run()
    texts = [str(e.value) for k in ("markdown", "caption", "warning", "info") for e in getattr(at, k)]
    texts += [str(m.value) for m in at.metric] + [str(m.label) for m in at.expander]
    live = [t for t in texts if re.search(r"(?<!\\\\)!\\[", t)]
    done(f"{len(live)} elements render the card's image live: {live[:1]}", not live)
'''),
    ("14", "sample names `=HYPERLINK(...)`, `+1+1`, `-2+3`, `@SUM(A1)` in `proportions.csv` / `fit.csv`", '''
    import numpy as np, pandas as pd
    from blue_core.inference import deconvolve
    from blue_core.io import read_bulk
    model = tiny()
    frame = read_bulk(bulk_csv(os.path.join(WORK, "b.csv"))).to_df()
    frame.index = ['=HYPERLINK("http://evil.example/x","clickme")', "+1+1", "-2+3", "@SUM(A1)"]
    result = deconvolve(frame.astype(float), model)
    result.write(os.path.join(WORK, "res"))
    cells = [c.strip('"') for f in ("proportions.csv", "fit.csv") for line in open(os.path.join(WORK, "res", f)).read().splitlines()
             for c in line.split(",")]
    def number(c):
        try:
            float(c); return True
        except ValueError:
            return False
    live = [c for c in cells if c[:1] in ("=", "+", "-", "@") and not number(c)]  # a negative number is no formula
    done(f"{len(live)} cells start a formula, e.g. {live[0]!r}" if live else "0 cells start a formula (apostrophe added)", not live)
'''),
]
CASE_BEFORE = {case_id: ISSUE26_BEFORE for case_id, _, _ in CASES if case_id[:2] in ("12", "13", "14")}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP_BYTES, CAP_BYTES))
    os.nice(10)


def make_bomb(path: Path) -> Path:
    """A gzip file of ~2 MB that inflates to 2 GiB of valid-looking CSV (genes x 1 sample)."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    block = b"".join(b"GENE%d,1\n" % (i % 10) for i in range(100_000))
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    with open(path, "wb") as handle:
        handle.write(compressor.compress(b"gene,S1\n"))
        written = 0
        while written < BOMB_INFLATED:
            handle.write(compressor.compress(block))
            written += len(block)
        handle.write(compressor.flush())
    return path


def export_tree(rev: str, target: Path) -> Path:
    """The source tree of ``rev`` (git archive), for the 'before' column."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def run_case(body: str, tree: Path, timeout: int = 900) -> dict:
    with tempfile.TemporaryDirectory(dir=WORK) as work:
        shutil.copy(WORK / "bomb.csv.gz", Path(work) / "bomb.csv.gz")
        script = Path(work) / "case.py"
        script.write_text(PRELUDE + textwrap.indent(textwrap.dedent(body), "    ") + EPILOGUE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLUE_")}
        env["BENCH_PLANTS"] = str(REPO / "tests")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(script), str(tree), work], capture_output=True, text=True,
                                  timeout=timeout, preexec_fn=_limit_memory, cwd=work, env=env)
        except subprocess.TimeoutExpired:
            return {"outcome": f"no result within {timeout} s", "safe": False, "peak_mb": None, "seconds": timeout}
        seconds = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[7:]), "seconds": round(seconds, 1)}
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"outcome": f"process ended (exit {proc.returncode}): {tail[:160]}", "safe": False, "peak_mb": None,
            "seconds": round(seconds, 1)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _vm(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def _server_page(tree: Path) -> Iterator[tuple[Any, subprocess.Popen]]:
    """A Streamlit server of ``tree`` on 127.0.0.1 and a Chromium page on its Data & model page."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUE_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(tree / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_limit_memory,
    )
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.set_default_timeout(120_000)
            for _ in range(60):
                try:
                    page.goto(f"http://127.0.0.1:{port}/", timeout=5000)
                    break
                except Exception:  # noqa: BLE001 - server still starting
                    time.sleep(1)
            page.get_by_role("tab", name="Upload your data").click()
            page.wait_for_timeout(2000)
            yield page, server
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def server_bomb(tree: Path, bomb: Path) -> dict:
    """Upload the bomb to a real server of ``tree`` in Chromium; the server's memory before and at peak."""
    with _server_page(tree) as (page, server):
        idle = _vm(server.pid, "VmRSS")
        t0 = time.perf_counter()
        page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(bomb))
        alert = page.get_by_text(re.compile("decompresses to more than|budget|MemoryError")).first
        alert.wait_for(timeout=300_000)
        message = alert.inner_text()
        seconds = time.perf_counter() - t0
        page.wait_for_timeout(1000)
        alive = server.poll() is None
        peak = _vm(server.pid, "VmHWM") if alive else float("nan")
    return {"message": " ".join(message.split())[:200], "rss_before_upload_mb": round(idle), "peak_mb": round(peak),
            "seconds_to_message": round(seconds, 1), "server_alive": alive}


def server_planted(tree: Path) -> dict:
    """Upload the Monaco cohort as an h5ad whose sample names live in a server file (issue 26) in Chromium.

    After the upload the page shows either an error or the input report; in the latter case the run is
    started and the Proportions page opened. Counts the lines of the server file found in the page.
    """
    sys.path.insert(0, str(REPO / "tests"))
    import _hdf5_plants as plants
    import anndata as ad

    from blue_core.io import read_bulk

    folder = Path(tempfile.mkdtemp(dir=WORK))
    secret = folder / "server_secret.txt"
    secret.write_bytes(plants.SECRET * 64)
    monaco = read_bulk(REPO / "sample_data" / "monaco_pbmc" / "bulk.csv.gz")
    planted = plants.plant_external_storage(folder / "cohort.h5ad", secret, adata=ad.AnnData(monaco.to_df().astype("float32")))
    with _server_page(tree) as (page, _):
        page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(planted))
        run = page.get_by_role("button", name="Run deconvolution")  # shown only once an upload was read
        page.get_by_test_id("stAlertContentError").or_(run).first.wait_for()
        error = page.get_by_test_id("stAlertContentError")
        message = error.first.inner_text() if error.count() else ""
        if not message and run.count():
            run.click()
            page.get_by_text(re.compile("Deconvolved")).first.wait_for()
            page.get_by_test_id("stSidebarNav").get_by_text("Proportions", exact=True).click()
            page.wait_for_timeout(6000)
        content = page.content()
        shot = folder / "page.png"
        page.screenshot(path=str(shot), full_page=True)
    line = plants.SECRET.decode()  # 52 bytes: the planted 13-byte names cut it into 4 pieces, aligned
    leaked = sum(content.count(line[i:i + 13].strip()) for i in range(0, len(line), 13))
    return {"error_shown": " ".join(message.split())[:200], "secret_lines_in_page": leaked, "safe": not leaked and bool(message)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="6717ba1", help="git revision before the fix (default 6717ba1)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder for security.md/.json")
    parser.add_argument("--skip-server", action="store_true", help="do not start a server for the upload test")
    parser.add_argument("--cases", nargs="*", help="run only these case ids (the others keep their last results)")
    parser.add_argument("--skip-bomb", action="store_true", help="keep the last server bomb upload result")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    bomb = make_bomb(WORK / "bomb.csv.gz")
    trees = {rev: export_tree(rev, WORK / f"before_{rev}") for rev in {args.before, *CASE_BEFORE.values()}}
    out = Path(args.out)
    previous = {}
    if args.cases and (out / "security.json").is_file():  # a partial run keeps the other cases' last results
        previous = {r["case"]: r for r in json.loads((out / "security.json").read_text()).get("cases", [])}
    rows = []
    for case_id, title, body in CASES:
        if args.cases and case_id not in args.cases:
            if case_id in previous:
                rows.append({"before_rev": args.before, **previous[case_id]})
            continue
        rev = CASE_BEFORE.get(case_id, args.before)
        before = run_case(body, trees[rev])
        after = run_case(body, REPO)
        print(f"[{case_id}] {title}\n  before ({rev}): {before}\n  after:  {after}", flush=True)
        rows.append({"case": case_id, "what": title, "before_rev": rev, "before": before, "after": after})
    previous_server = json.loads((out / "security.json").read_text()).get("server_bomb") \
        if (out / "security.json").is_file() else None
    server = previous_server if args.skip_bomb else None if args.skip_server else server_bomb(REPO, bomb)
    if server:
        print(f"server bomb upload (after): {server}", flush=True)
    planted = None if args.skip_server else {
        "before_rev": ISSUE26_BEFORE, "before": server_planted(trees[ISSUE26_BEFORE]), "after": server_planted(REPO)}
    if planted:
        print(f"server planted h5ad upload: {planted}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    (out / "security.json").write_text(json.dumps({"before": args.before, "after": head, "cases": rows,
                                                    "server_bomb": server, "server_planted": planted, "bomb_bytes": bomb.stat().st_size,
                                                    "bomb_inflated_bytes": BOMB_INFLATED}, indent=1) + "\n")

    def cell(r: dict) -> str:
        mark = "ok" if r["safe"] else "**FAULT**"
        return f"{mark}: {r['outcome']}".replace("|", "/").replace("\n", " ")

    table = [{"#": r["case"], "case": r["what"], "before (commit)": f"({r.get('before_rev', args.before)}) " + cell(r["before"]),
              "after": cell(r["after"]),
              "peak MB before / after": f"{r['before']['peak_mb'] or '—'} / {r['after']['peak_mb'] or '—'}"}
             for r in rows]
    lines = [
        "# Security and data-safety cases (issues 9 and 26), before and after",
        "",
        f"Produced by `python bench/security.py` (working tree at {head}). Each case runs in "
        f"its own process, capped at {CAP_BYTES >> 30} GB of address space, once on the tree of the last commit before "
        f"its fix (`{args.before}` for issue 9's cases 1-11, `{ISSUE26_BEFORE}` for issue 26's cases 12-14) and once "
        "on the working tree. \"peak MB\" is the process's own peak RSS (including ~400 MB of imports). "
        "A partial run (`--cases ... --skip-bomb`) keeps the other rows from the last full run.",
        f"The bomb is a {bomb.stat().st_size / 1e6:.1f} MB gzip file that inflates to {BOMB_INFLATED >> 30} GiB of "
        "CSV text.",
        "",
        markdown_table(pd.DataFrame(table)),
        "",
    ]
    if server:
        lines += [
            "## The bomb uploaded to a running server (after the fix)",
            "",
            f"A Streamlit server of the working tree on 127.0.0.1, the bomb uploaded in Chromium on the Data & model "
            f"page: the server answered in {server['seconds_to_message']} s with \"{server['message']}\"; its memory "
            f"was {server['rss_before_upload_mb']} MB before the upload and peaked at **{server['peak_mb']} MB** "
            f"(VmHWM); the server {'kept running' if server['server_alive'] else 'died'}. Before the fix the same "
            "upload decompresses the whole 2 GiB and parses it (case 2 above: it hits the 8 GB cap).",
            "",
        ]
    if planted:
        b, a = planted["before"], planted["after"]
        lines += [
            "## A planted h5ad uploaded to a running server (issue 26), before and after",
            "",
            "The Monaco cohort (12 samples) saved as an h5ad whose `obs/_index` (the sample names) uses HDF5 external "
            "storage on a file of the server (`server_secret.txt`, lines like `root:x:0:0:SECRET-LINE-FROM-OUTSIDE:...`), "
            "uploaded in Chromium on the Data & model page; when the page accepts it, the run is started and the "
            "Proportions page opened. Pieces of the server file (the 13-byte cuts the planted fixed-width names hold) found in the page:",
            "",
            f"- before (`{planted['before_rev']}`): **{b['secret_lines_in_page']}** pieces of the server file in the page"
            + (f"; error shown: \"{b['error_shown']}\"" if b["error_shown"] else "; no error shown") + ".",
            f"- after: **{a['secret_lines_in_page']}** pieces; error shown: \"{a['error_shown']}\".",
            "",
        ]
    (out / "security.md").write_text("\n".join(lines))
    print(f"wrote {out / 'security.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
