"""``blue app``: start the BLUE studio Streamlit app from the installed package.

The app (``app.py`` + ``pages/``, package ``blue_app``) is found with
:func:`~blue_core.io.resources.package_folder`; its ``.streamlit/config.toml`` is passed as command-line
options, because Streamlit reads that file only from the working directory. Streamlit is started as a
separate program (``python -m streamlit run``, exec'd in place of ``blue app``): the engine never imports it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from ..exceptions import BlueInputError
from ..io.resources import package_folder


def streamlit_command(*, port: int | None = None, address: str | None = None, headless: bool = True) -> list[str]:
    """The ``python -m streamlit run <installed app.py> --<section>.<key>=<value> ...`` command line.

    Returns
    -------
    list of str
        The argument vector; the options come from the app's ``.streamlit/config.toml``, then ``port``,
        ``address`` and ``headless`` override them.
    """
    folder = package_folder("blue_app")
    if folder is None or not (folder / "app.py").is_file():
        raise BlueInputError("the BLUE studio app is not installed (no blue_app/app.py); install it with `pip install .` "
                             "from the repository, or run `streamlit run app.py` in the checkout.")
    options: dict[str, object] = {}
    config = folder / ".streamlit" / "config.toml"
    if config.is_file():
        for section, values in tomllib.loads(config.read_text(encoding="utf-8")).items():
            for key, value in values.items():
                options[f"{section}.{key}"] = value
    if port is not None:
        options["server.port"] = int(port)
    if address:
        options["server.address"] = address
    options["server.headless"] = bool(headless)

    def text(value: object) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    return [sys.executable, "-m", "streamlit", "run", str(folder / "app.py"),
            *[f"--{key}={text(value)}" for key, value in options.items()]]


def _cmd_app(args: argparse.Namespace) -> int:
    command = streamlit_command(port=args.port, address=args.address, headless=not args.browser)
    print(f"Starting BLUE studio: {Path(command[4]).parent} (stop with Ctrl+C)", file=sys.stderr, flush=True)
    if hasattr(os, "execv"):  # become the server process: a signal to `blue app` reaches Streamlit itself
        os.execv(command[0], command)
    return subprocess.call(command)  # pragma: no cover - platforms without exec


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``app`` sub-command."""
    parser = subparsers.add_parser("app", help="start the BLUE studio app (Streamlit) from the installed package",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="port to serve on (default: Streamlit's 8501)")
    parser.add_argument("--address", default=None, help="address to bind (default: all interfaces)")
    parser.add_argument("--browser", action="store_true", help="open a browser window (default: headless)")
    parser.set_defaults(func=_cmd_app)
