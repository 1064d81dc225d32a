#!/usr/bin/env python3
"""Copy the dashboard's npm dependencies from ``ui/node_modules`` into the package.

The dashboard has no build step: its own code is plain ES modules. What it takes from npm
is copied as published, with its license, into ``src/llamaswitch_http/ui/vendor/``, and
``vendor/VENDORED.json`` records each file's package, version and SHA-256. The wheel ships
those copies, so users need no Node.js.

    npm ci --prefix ui                  # the versions pinned in ui/package-lock.json
    python3 ui/vendor.py                # copy them into the package
    python3 ui/vendor.py --check        # exit 1 if the package's copies are stale

``--check`` is what the test suite runs (tests/ui/test_assets.py): a bump in
package-lock.json without a fresh copy fails CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
TARGET = HERE.parent / "src" / "llamaswitch_http" / "ui" / "vendor"
MANIFEST = TARGET / "VENDORED.json"

#: (npm package, file inside it, name in the package's vendor folder). Chart.js's UMD
#: bundle includes @kurkle/color, so that license ships too.
FILES = (
    ("chart.js", "dist/chart.umd.min.js", "chart.umd.min.js"),
    ("chart.js", "LICENSE.md", "chart.js.LICENSE.txt"),
    ("@kurkle/color", "LICENSE.md", "kurkle-color.LICENSE.txt"),
)


def locked_version(package: str) -> str:
    """The version ``ui/package-lock.json`` pins for ``package``."""
    lock = json.loads((HERE / "package-lock.json").read_text(encoding="utf-8"))
    return str(lock["packages"][f"node_modules/{package}"]["version"])


def expected() -> dict[str, object]:
    """The manifest the copies should have, from package-lock.json and node_modules."""
    files = {}
    for package, source, name in FILES:
        installed = json.loads((NODE_MODULES / package / "package.json").read_text("utf-8"))
        version = locked_version(package)
        if installed["version"] != version:
            raise SystemExit(f"ui/node_modules has {package} {installed['version']}, the lock "
                             f"file pins {version}: run `npm ci --prefix ui`")  # fmt: skip
        body = (NODE_MODULES / package / source).read_bytes()
        files[name] = {"package": package, "version": version, "source": source,
                       "sha256": hashlib.sha256(body).hexdigest()}  # fmt: skip
    return {"files": files}


def check() -> list[str]:
    """What is stale: an empty list when the package's copies match node_modules."""
    problems = []
    want = expected()
    have = json.loads(MANIFEST.read_text("utf-8")) if MANIFEST.exists() else {}
    if have != want:
        problems.append(f"{MANIFEST.name} differs from package-lock.json / node_modules")
    for name, meta in want["files"].items():  # type: ignore[attr-defined]
        path = TARGET / name
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != meta["sha256"]:
            problems.append(
                f"vendor/{name} is not {meta['package']} {meta['version']}'s {meta['source']}"
            )
    return problems


def copy() -> None:
    """Copy every file and write the manifest."""
    want = expected()
    TARGET.mkdir(parents=True, exist_ok=True)
    for package, source, name in FILES:
        (TARGET / name).write_bytes((NODE_MODULES / package / source).read_bytes())
    MANIFEST.write_text(json.dumps(want, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main() -> int:
    """``vendor.py [--check]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the copies are stale")
    args = parser.parse_args()
    if not NODE_MODULES.is_dir():
        print("ui/node_modules is missing: run `npm ci --prefix ui` first", file=sys.stderr)
        return 2
    if args.check:
        problems = check()
        for problem in problems:
            print(f"stale: {problem}", file=sys.stderr)
        return 1 if problems else 0
    copy()
    print(f"vendored {len(FILES)} files into {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
