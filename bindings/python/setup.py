"""Build hook: compiles the Rust library and puts ``libiobus.so`` inside the
``iobus`` package, so that an installed wheel carries its own library.

The repository root is found relative to this file (``../..``, the folder
holding ``Cargo.toml``); ``IOBUS_REPO`` points elsewhere. ``CARGO`` names the
cargo command and ``CARGO_TARGET_DIR`` is honoured. ``IOBUS_PREBUILT`` may
name an already built ``libiobus.so`` to ship instead of building one; the
shipped copy is stripped of debug info unless ``IOBUS_KEEP_DEBUG`` is set.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
LIBRARY = "libiobus.so"


def repo_root() -> Path:
    configured = os.environ.get("IOBUS_REPO")
    candidates = [Path(configured)] if configured else [HERE.parent.parent]
    for root in candidates:
        if (root / "Cargo.toml").is_file() and (root / "src" / "ffi").is_dir():
            return root.resolve()
    raise SystemExit(
        "iobus: cannot find the iobus Rust sources (Cargo.toml two folders above "
        f"{HERE}); build from a checkout of the repository or set IOBUS_REPO"
    )


def build_library() -> Path:
    prebuilt = os.environ.get("IOBUS_PREBUILT")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            raise SystemExit(f"iobus: IOBUS_PREBUILT={prebuilt} is not a file")
        return path
    root = repo_root()
    cargo = shlex.split(os.environ.get("CARGO") or "cargo")
    if shutil.which(cargo[0]) is None:
        raise SystemExit("iobus: building the Rust library needs cargo (https://rustup.rs) on PATH")
    subprocess.run([*cargo, "build", "--release", "--lib"], cwd=root, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or root / "target")
    if not target.is_absolute():
        target = root / target
    built = target / "release" / LIBRARY
    if not built.is_file():
        raise SystemExit(f"iobus: cargo finished but {built} is missing")
    return built


class BuildPyWithLibrary(build_py):
    """The usual build_py, plus the shared library copied into the package."""

    def run(self) -> None:
        super().run()
        library = build_library()
        destination = Path(self.build_lib) / "iobus" / LIBRARY
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(library, destination)
        os.chmod(destination, 0o755)
        # The release profile keeps debug info; the shipped copy does without.
        strip = shutil.which("strip")
        if strip and not os.environ.get("IOBUS_KEEP_DEBUG"):
            subprocess.run([strip, "--strip-debug", str(destination)], check=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / "iobus" / LIBRARY)]


class NativeDistribution(Distribution):
    """Carries a native library, so it installs as platform-specific."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """A wheel for this platform (it carries a native library) that any
    Python 3 can load: ctypes needs no C extension ABI."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(distclass=NativeDistribution, cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel})
