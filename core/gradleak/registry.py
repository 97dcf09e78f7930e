"""The registry: every component the loaded plugins registered, looked up by bare or qualified name."""

from __future__ import annotations

import dataclasses
import re
import threading
import types
from collections import defaultdict
from collections.abc import Callable, Iterable

from .components import KINDS, Component, Modality
from .errors import AmbiguousComponent, PluginError, UnknownComponent, suggest
from .plugins import FIRST_PARTY, PluginInfo, load_plugins, new_manager, strict
from .types import CAPABILITIES

#: hook name -> component kind
HOOKS: dict[str, str] = {
    "register_modalities": "modality",
    "register_cases": "case",
    "register_attacks": "attack",
    "register_priors": "prior",
    "register_metrics": "metric",
    "register_defenses": "defense",
    "register_detectors": "detector",
}
PLURAL = {"modality": "modalities", "case": "cases", "attack": "attacks", "prior": "priors",
          "metric": "metrics", "defense": "defenses", "detector": "detectors"}
_KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_SNAKE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")


class Registry:
    """Components by kind and name. Build one with :func:`gradleak.registry` (shared, lazy) or directly
    (``Registry(entry_points=False, extra=[("mine", module)])``, as tests do)."""

    def __init__(self, entry_points: bool = True, extra: Iterable[tuple[str, object]] = ()) -> None:
        self.pm = new_manager()
        self._entries: dict[str, dict[str, list[type[Component]]]] = defaultdict(lambda: defaultdict(list))
        self.infos: dict[str, PluginInfo] = load_plugins(self.pm, extra=extra, entry_points=entry_points)
        self._collect()

    # ------------------------------------------------------------------ building
    def _collect(self) -> None:
        for hook_name, kind in HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in reversed(hook.get_hookimpls()):  # pluggy lists last-registered first
                plugin = impl.plugin_name
                if self.infos[plugin].status != "ok":
                    continue
                try:
                    impl.function(**({'register': self._registrar(kind, plugin)} if 'register' in impl.argnames else {}))
                except Exception as exc:
                    if strict():
                        raise
                    self._drop(plugin, f"{hook_name} raised {type(exc).__name__}: {exc}")
        for info in self.infos.values():
            if info.status == "ok":
                info.provides = {PLURAL[k]: n for k in KINDS if (n := len(self.components(k, plugin=info.name)))}

    def _drop(self, plugin: str, error: str) -> None:
        info = self.infos[plugin]
        info.status, info.error = "broken", error + " (run with GRADLEAK_STRICT_PLUGINS=1 for the traceback)"
        for by_name in self._entries.values():
            for name in list(by_name):
                by_name[name] = [c for c in by_name[name] if c.plugin != plugin]
                if not by_name[name]:
                    del by_name[name]

    def _registrar(self, kind: str, plugin: str) -> Callable[[type[Component]], None]:
        base = KINDS[kind]

        def register(cls: type[Component]) -> None:
            what = f"plugin '{plugin}' registered {cls!r} as {'an' if kind[0] in 'aeiou' else 'a'} {kind}"
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(f"{what}, but it is not a subclass of gradleak.{base.__name__}")
            name = getattr(cls, "name", None)
            pattern = _SNAKE if kind == "metric" else _KEBAB
            if not isinstance(name, str) or not pattern.fullmatch(name):
                style = "snake_case" if kind == "metric" else "kebab-case"
                raise PluginError(f"{what} with name {name!r}; names of {PLURAL[kind]} are {style}")
            if not dataclasses.is_dataclass(cls.Config):
                raise PluginError(f"{what}; its Config must be a dataclass")
            unknown = set(cls.requires) - set(CAPABILITIES)
            if unknown:
                raise PluginError(f"{what} requiring unknown capabilities {sorted(unknown)}; known: {CAPABILITIES}")
            if kind == "modality" and self._entries["modality"].get(name):
                other = self._entries["modality"][name][0].plugin
                raise PluginError(f"{what}, but plugin '{other}' already registered modality '{name}'")
            if any(c.plugin == plugin for c in self._entries[kind].get(name, [])):
                raise PluginError(f"{what}, but it registered a {kind} named '{name}' already")
            bound = types.new_class(cls.__name__, (cls,), {}, lambda ns: ns.update(
                plugin=plugin, __doc__=cls.__doc__, __module__=cls.__module__, __qualname__=cls.__qualname__))
            self._entries[kind][name].append(bound)

        return register

    # ------------------------------------------------------------------ queries
    def plugins(self) -> list[PluginInfo]:
        return list(self.infos.values())

    def components(self, kind: str, modality: str | None = None, plugin: str | None = None) -> list[type[Component]]:
        out = [c for entries in self._entries[kind].values() for c in entries]
        if modality is not None:
            out = [c for c in out if _applies(c, modality)]
        if plugin is not None:
            out = [c for c in out if c.plugin == plugin]
        return sorted(out, key=lambda c: (c.name, c.plugin))

    def names(self, kind: str) -> list[str]:
        return sorted({c.qualified_name() for c in self.components(kind)} | set(self._entries[kind]))

    def modality(self, name: str) -> type[Modality]:
        cls = self.get("modality", name)
        assert issubclass(cls, Modality)
        return cls

    def get(self, kind: str, name: str, modality: str | None = None) -> type[Component]:
        """The component of ``kind`` called ``name`` (bare or ``plugin/name``).

        A bare name registered by several plugins resolves to the one applying to ``modality`` (specific
        components before generic ones); a clash that stays ambiguous raises :class:`AmbiguousComponent`.
        """
        if "/" in name:
            plugin, bare = name.split("/", 1)
            for cls in self._entries[kind].get(bare, []):
                if cls.plugin == plugin:
                    return cls
            self._unknown(kind, name, plugin)
        candidates = self._entries[kind].get(name, [])
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            self._unknown(kind, name, None)
        if modality is not None:
            fitting = [c for c in candidates if _applies(c, modality)]
            specific = [c for c in fitting if c.modalities is not None]
            for group in (specific, fitting):
                if len(group) == 1:
                    return group[0]
        names = ", ".join(sorted(c.qualified_name() for c in candidates))
        where = f" for modality '{modality}'" if modality else ""
        raise AmbiguousComponent(f"{kind} '{name}' is registered by several plugins{where}: use one of {names}")

    def _unknown(self, kind: str, name: str, plugin: str | None) -> None:
        info = self.infos.get(plugin) if plugin else None
        if info is not None and info.status != "ok":
            fix = f" ({info.error})" if info.error else ""
            raise UnknownComponent(f"{kind} '{name}' comes from plugin '{plugin}', which is {info.status}{fix}")
        if plugin in FIRST_PARTY and info is None:
            raise UnknownComponent(f"{kind} '{name}' comes from plugin '{plugin}'; install it with: {FIRST_PARTY[plugin]}")
        known = self.names(kind)
        listing = ", ".join(known) if len(known) <= 12 else f"see: gradleak list {PLURAL[kind]}"
        raise UnknownComponent(f"no {kind} named '{name}'.{suggest(name, known)} Known {PLURAL[kind]}: {listing}")

    def call_commands(self, cli: object) -> None:
        """Let every loaded plugin add CLI commands (a failing plugin is marked broken)."""
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):
            try:
                impl.function(**({'cli': cli} if 'cli' in impl.argnames else {}))
            except Exception as exc:
                if strict():
                    raise
                self._drop(impl.plugin_name, f"register_commands raised {type(exc).__name__}: {exc}")


def _applies(cls: type[Component], modality: str) -> bool:
    if cls.kind == "case":
        return getattr(cls, "modality", None) == modality
    if cls.kind == "modality":
        return cls.name == modality
    return cls.applies_to(modality)


_shared: Registry | None = None
_lock = threading.Lock()


def registry() -> Registry:
    """The process-wide registry, built on first use (plugins load here, never at import)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = Registry()
        return _shared


def reset_registry() -> None:
    """Forget the shared registry (tests, or after installing a plugin in-process)."""
    global _shared
    with _lock:
        _shared = None
