"""Plugin discovery through real entry points: throwaway distributions (a ``*.dist-info`` with an
``entry_points.txt`` beside the plugin module) on ``PYTHONPATH``, loaded in a subprocess so the registry and
``sys.modules`` start clean. One subprocess runs every scenario that needs no restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import gradleak

ATTACK = '''
import gradleak

class {cls}(gradleak.Attack):
    """{doc}"""
    name = {name!r}
    modalities = {modalities}

    def reconstruct(self, update, view, budget=None):
        raise NotImplementedError
'''

PLUGINS = {  # plugin (entry-point) name -> source of its module gltest_<name>
    "broken": 'raise RuntimeError("boom from gltest_broken")\n',
    "missing": "import not_a_real_package_xyz\n",
    "typo": "import gradleak\n\n@gradleak.hookimpl\ndef register_attack(register):\n    pass\n",
    "badname": ATTACK.format(cls="Bad", doc="A badly named attack.", name="Bad_Name", modalities=None)
    + "\n@gradleak.hookimpl\ndef register_attacks(register):\n    register(Bad)\n",
    **{
        p: ATTACK.format(cls="X", doc=f"X of {p}.", name="x", modalities=f"frozenset({{{kind!r}}})")
        + ATTACK.format(cls="Y", doc=f"Y of {p}.", name="y", modalities=None)
        + "\n@gradleak.hookimpl\ndef register_attacks(register):\n    register(X)\n    register(Y)\n"
        for p, kind in (("a", "image"), ("b", "graph"))
    },
}

SCENARIOS = textwrap.dedent('''
    import json, os, sys
    import gradleak
    out = {"imported": sorted(m for m in sys.modules if m.split(".")[0].startswith(("gradleak_", "gltest_")))}

    def attempt(f):
        try:
            return {"ok": f()}
        except Exception as exc:
            return {"error": type(exc).__name__, "message": str(exc)}

    def snapshot(**lookups):
        reg = gradleak.Registry()
        row = {"infos": {n: i.as_dict() for n, i in reg.infos.items()}}
        for key, (name, modality) in lookups.items():
            row[key] = attempt(lambda: reg.get("attack", name, modality=modality).qualified_name())
        return row

    os.environ["GRADLEAK_LOAD_PLUGINS"] = "broken,missing,typo,badname,a,b"
    out["default"] = snapshot(dlg=("dlg", None), ax=("a/x", None), bx=("b/x", None), x=("x", None),
                              x_image=("x", "image"), x_graph=("x", "graph"), y_image=("y", "image"),
                              from_broken=("broken/anything", None))
    os.environ["GRADLEAK_DISABLE_PLUGINS"] = "a"
    out["disable"] = snapshot(x=("x", None), ax=("a/x", None))
    del os.environ["GRADLEAK_DISABLE_PLUGINS"]
    os.environ["GRADLEAK_LOAD_PLUGINS"] = "b"
    out["allow"] = snapshot(dlg=("dlg", None), x=("x", None))
    print(json.dumps(out))
''')


def make_dist(root: Path, plugin: str, source: str) -> None:
    """A minimal installed distribution ``gltest-<plugin>`` whose entry point ``<plugin>`` is gltest_<plugin>."""
    (root / f"gltest_{plugin}.py").write_text(source)
    info = root / f"gltest_{plugin}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: gltest-{plugin}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[gradleak]\n{plugin} = gltest_{plugin}\n")


def python(code: str, path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRADLEAK_")}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    for plugin, source in PLUGINS.items():
        make_dist(root, plugin, source)
    return root


@pytest.fixture(scope="module")
def results(site: Path) -> dict:
    proc = python(SCENARIOS, site)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_broken_plugin_is_listed_and_the_rest_works(results):
    info = results["default"]["infos"]["broken"]
    assert info["status"] == "broken"
    assert "RuntimeError" in info["error"] and "boom from gltest_broken" in info["error"]
    assert info["distribution"] == "gltest-broken" and info["version"] == "0.1"
    assert results["default"]["dlg"] == {"ok": "builtin/dlg"}
    from_broken = results["default"]["from_broken"]
    assert from_broken["error"] == "UnknownComponent" and "'broken', which is broken" in from_broken["message"]


def test_missing_dependency_is_unavailable_with_install_hint(results):
    info = results["default"]["infos"]["missing"]
    assert info["status"] == "unavailable"
    assert "not_a_real_package_xyz" in info["error"]
    assert 'pip install "gltest-missing"' in info["error"]


def test_disable_and_allow_lists(results):
    disabled = results["disable"]["infos"]["a"]
    assert disabled["status"] == "disabled" and "GRADLEAK_DISABLE_PLUGINS" in disabled["error"]
    assert results["disable"]["x"] == {"ok": "b/x"}  # no clash left once a is off
    assert results["disable"]["ax"]["error"] == "UnknownComponent"
    allow = results["allow"]["infos"]
    assert allow["b"]["status"] == "ok"
    for other in ("a", "broken", "missing", "typo", "badname"):
        assert allow[other]["status"] == "disabled", allow[other]
        assert "not in GRADLEAK_LOAD_PLUGINS" in allow[other]["error"]
    assert allow["builtin"]["status"] == "ok"
    assert results["allow"]["dlg"] == {"ok": "builtin/dlg"}


def test_strict_mode_reraises(site):
    proc = python("import gradleak; gradleak.Registry()", site,
                  GRADLEAK_STRICT_PLUGINS="1", GRADLEAK_LOAD_PLUGINS="broken")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
    assert "RuntimeError: boom from gltest_broken" in proc.stderr


def test_unknown_hook_name_breaks_the_plugin(results):
    info = results["default"]["infos"]["typo"]
    assert info["status"] == "broken"
    assert "register_attack" in info["error"]


def test_same_bare_name_in_two_plugins(results):
    r = results["default"]
    assert r["infos"]["a"]["status"] == r["infos"]["b"]["status"] == "ok"
    assert r["infos"]["a"]["provides"] == {"attacks": 2}
    assert r["ax"] == {"ok": "a/x"} and r["bx"] == {"ok": "b/x"}
    assert r["x"]["error"] == "AmbiguousComponent"
    assert "a/x" in r["x"]["message"] and "b/x" in r["x"]["message"]
    assert r["x_image"] == {"ok": "a/x"} and r["x_graph"] == {"ok": "b/x"}  # the modality decides
    assert r["y_image"]["error"] == "AmbiguousComponent"  # both apply to every modality
    assert "a/y" in r["y_image"]["message"] and "b/y" in r["y_image"]["message"]


def test_badly_named_component_breaks_the_plugin(results):
    info = results["default"]["infos"]["badname"]
    assert info["status"] == "broken"
    assert "Bad_Name" in info["error"] and "kebab-case" in info["error"]
    assert info["provides"] == {}


def test_import_gradleak_loads_no_plugin(results):
    assert results["imported"] == []  # no gradleak_vision, gradleak_graph, ... nor a gltest_* module


def test_in_process_extra_module():
    mine = types.ModuleType("mine")
    exec(ATTACK.format(cls="Guess", doc="A guess.", name="zero-guess", modalities=None)
         + "\n@gradleak.hookimpl\ndef register_attacks(register):\n    register(Guess)\n", mine.__dict__)
    reg = gradleak.Registry(entry_points=False, extra=[("mine", mine)])
    assert reg.infos["mine"].status == "ok"
    assert reg.infos["mine"].provides == {"attacks": 1}
    cls = reg.get("attack", "mine/zero-guess")
    assert cls is reg.get("attack", "zero-guess")
    assert cls.plugin == "mine" and issubclass(cls, mine.Guess)
    assert reg.get("attack", "dlg").plugin == "builtin"
    assert set(reg.infos) == {"builtin", "mine"}
