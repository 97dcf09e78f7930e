"""Documentation stays true: every hook is documented, and the README's commands exist."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from gradleak import hookspecs

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _hooks():
    return {name: fn for name, fn in vars(hookspecs).items() if name.startswith("register_") and callable(fn)}


def test_every_hook_is_in_the_readme_and_documents_its_arguments():
    hooks = _hooks()
    assert set(hooks) == {"register_modalities", "register_cases", "register_attacks", "register_priors",
                          "register_metrics", "register_defenses", "register_detectors", "register_commands"}
    for name, fn in hooks.items():
        assert name in README, f"{name} is missing from README.md"
        doc = inspect.getdoc(fn) or ""
        assert len(doc.splitlines()) >= 3, f"{name} needs a real docstring"
        for arg in inspect.signature(fn).parameters:
            assert f":param {arg}:" in doc, f"{name} does not document its argument {arg}"


def test_readme_leads_with_the_two_make_commands_and_ci_calls_make_test():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    assert "make demo" in first_block and "make test" in first_block
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in makefile and "uv " not in makefile
