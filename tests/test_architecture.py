"""The shape of the code base, as README.md's "Architecture" section draws it: the
folders' one-way import order, the names pip installs, registered names in files of
their name."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plugin_utils import REPO

PLUGIN = "xlmr_plugin"
NAMESPACE = "xlmr"


def role_folders() -> list[str]:
    """setup.py's ROLES: the top-level folders installed as ``xlmr.<folder>``, lowest layer first."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "ROLES":
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no ROLES")


def layers() -> list[str]:
    return [PLUGIN, *role_folders()]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative ones resolved."""
    package = list(path.relative_to(REPO).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            found.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == PLUGIN:
        return PLUGIN
    if parts[0] == NAMESPACE and len(parts) > 1:
        return parts[1]
    return None


def python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((REPO / folder).rglob("*.py"))]


def test_the_layers_import_one_way() -> None:
    order = layers()
    wrong = []
    for folder in order:
        for path in python_files(folder):
            for line, module in imported_modules(path):
                target = layer_of(module)
                if target is not None and order.index(target) > order.index(folder):
                    wrong.append(f"{path.relative_to(REPO)}:{line} ({folder}) imports {module} ({target})")
    assert not wrong, "a lower layer imports a higher one:\n" + "\n".join(wrong)


def test_our_folders_are_imported_under_their_installed_names() -> None:
    """`import preprocess` works from the repository root only, and would load a second copy."""
    bare = set(role_folders())
    wrong = [f"{path.relative_to(REPO)}:{line} imports {module}"
             for path in python_files(*layers(), "tests", "benchmarks", "examples")
             for line, module in imported_modules(path) if module.split(".")[0] in bare]
    assert not wrong, "\n".join(wrong)


def test_the_readme_draws_the_same_order() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    drawn = re.search(r"^import order: (.+)$", section, re.M)
    assert drawn, "README's Architecture section has no 'import order:' line"
    assert [name.strip(" `") for name in drawn.group(1).split("<")] == [
        PLUGIN, *(f"{NAMESPACE}.{role}" for role in role_folders())]


def test_pip_installs_no_generic_top_level_name(tmp_path: Path) -> None:
    """pip install . into an empty virtualenv: only the plugin and the xlmr namespace appear."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target_python = venv / "bin" / "python"
    purelib = subprocess.run([str(target_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    before = set(Path(purelib).iterdir())
    # a copy, so that the build leaves no build/ or *.egg-info in the checkout
    source = tmp_path / "source"
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True, text=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO / name).read_bytes())
    # pip builds the wheel with this environment's setuptools and installs it there
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--quiet"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel, = wheels.glob("*.whl")
    proc = subprocess.run([*pip, "--python", str(target_python), "install", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = {p.name for p in set(Path(purelib).iterdir()) - before
                 if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"}
    assert installed == {PLUGIN, NAMESPACE}
    assert {p.name for p in (Path(purelib) / NAMESPACE).iterdir()} >= set(role_folders())


@pytest.fixture(scope="module")
def registries() -> dict[str, dict]:
    import xlmr_plugin  # noqa: F401  (registers)
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.models import MODEL_REGISTRY
    from fairseq.optim import OPTIMIZER_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    return {"task": TASK_REGISTRY, "criterion": CRITERION_REGISTRY, "model": MODEL_REGISTRY,
            "optimizer": OPTIMIZER_REGISTRY}


def test_each_registered_name_is_in_a_file_of_its_name(registries: dict[str, dict]) -> None:
    ours = {(kind, name): cls.__module__ for kind, registry in registries.items()
            for name, cls in registry.items() if cls.__module__.startswith(PLUGIN + ".")}
    assert {kind for kind, _ in ours} == set(registries), "a kind of registration went missing"
    wrong = [f"{kind} {name} in {module}" for (kind, name), module in ours.items()
             if module.rsplit(".", 1)[1] != name]
    assert not wrong, "\n".join(wrong)


def test_readme_architectures_table_is_shapes() -> None:
    """README's table of architectures is models/shapes.py's SHAPES, counts included."""
    from xlmr_plugin.models.shapes import SHAPES

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(xlmr_\w+)`[^|]*\| (\d+) \| (\d+) \| (\d+) \| (\d+) \| ?([\d.]*[MB]?) \|$", readme, re.M)
    assert {name for name, *_ in rows} == set(SHAPES)
    for name, layers_, width, heads, ffn, count in rows:
        shape = SHAPES[name]
        assert (shape.layers, shape.width, shape.heads, shape.ffn) == tuple(map(int, (layers_, width, heads, ffn))), name
        if count:
            scale = 1e9 if count.endswith("B") else 1e6
            digits = len(count[:-1].split(".")[1])
            assert round(shape.parameters(250_002) / scale, digits) == float(count[:-1]), name
