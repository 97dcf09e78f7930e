"""The ``gradleak`` command line (the CLI contract of DESIGN.md).

Exit codes: 0 done, 2 bad input (one line on stderr naming the fix), 1 internal failure.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import click

from . import __version__
from .config import describe_fields
from .errors import GradleakError, UnknownComponent, UsageError, suggest
from .plugins import FIRST_PARTY
from .registry import PLURAL, registry

KIND_CHOICES = list(PLURAL.values())
SINGULAR = {v: k for k, v in PLURAL.items()}

EXAMPLES = """\b
Examples:
  gradleak plugins
  gradleak list attacks --modality image
  gradleak show inverting-gradients
  gradleak run --case vision/lenet --attack dlg --out runs/dlg
  gradleak run --case vision/lenet --attack inverting-gradients --batch-size 4 --set labels=known --json
  gradleak run --case vision/lenet --attack idlg --data my_photos/ --batches 2 --budget 100
"""


class _Group(click.Group):
    """Turns gradleak's usage errors into one line and exit code 2, anything else into exit code 1."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:  # `gradleak --bogus`
            _usage_error(exc)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            _fail(str(exc), 2)
        except GradleakError as exc:
            _fail(str(exc), 1)
        except click.UsageError as exc:  # a malformed command line (bad option value, missing option): one line too
            _usage_error(exc)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:  # stdout closed early (`gradleak list cases | head -1`): not an error of ours
            _quiet_broken_pipe()
        except Exception as exc:  # an internal failure: short message, traceback on demand
            if os.environ.get("GRADLEAK_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (set GRADLEAK_DEBUG=1 for the traceback)", 1)


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _usage_error(exc: click.UsageError) -> None:
    """Click's own usage errors as one line plus where to look; ``gradleak`` alone still shows the help."""
    if exc.ctx is None or isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        raise exc
    _fail(f"{' '.join(exc.format_message().split())} (see: {exc.ctx.command_path} --help)", 2)


def _quiet_broken_pipe() -> None:
    """Exit 141 (128 + SIGPIPE) without a message; stdout goes to devnull so the final flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (e.g. under click's CliRunner)
        pass
    sys.exit(141)


@click.group(cls=_Group, epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradleak")
def cli() -> None:
    """gradleak: run gradient inversion attacks, defenses and leakage metrics on federated learning cases."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def plugins(as_json: bool) -> None:
    """List plugins: name, distribution, version, status and what each provides."""
    infos = registry().plugins()
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos]))
        return
    rows = [("plugin", "distribution", "version", "status", "provides")]
    for i in infos:
        provides = ", ".join(f"{n} {k}" for k, n in i.provides.items()) if i.status == "ok" else i.error
        rows.append((i.name, i.distribution, i.version, i.status, provides or "-"))
    _table(rows)


@cli.command("list")
@click.argument("kind", type=click.Choice(KIND_CHOICES))
@click.option("--modality", "-m", help="Only components that apply to this data kind (image, graph, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_(kind: str, modality: str | None, as_json: bool) -> None:
    """List registered components of one KIND."""
    reg = registry()
    if modality is not None:
        reg.get("modality", modality)  # an unknown data kind is refused with "did you mean" (exit 2)
    comps = reg.components(SINGULAR[kind], modality=modality)
    entries = []
    for c in comps:
        mods = getattr(c, "modality", None) if c.kind == "case" else (
            c.name if c.kind == "modality" else (",".join(sorted(c.modalities)) if c.modalities else "any"))
        name = c.qualified_name() if c.kind == "case" else c.name
        entries.append({"name": name, "qualified_name": c.qualified_name(), "plugin": c.plugin,
                        "modalities": mods, "summary": c.summary()})
    if as_json:
        click.echo(json.dumps(entries))
        return
    if not entries:
        click.echo(f"no {kind}" + (f" for modality '{modality}'" if modality else ""))
        return
    _table([("name", "plugin", "data", "summary")] +
           [(e["name"], e["plugin"], str(e["modalities"]), e["summary"]) for e in entries])


@cli.command()
@click.argument("name")
def show(name: str) -> None:
    """Show a component: docstring, paper, plugin, data kinds, capabilities, parameters and defaults."""
    reg = registry()
    # Every component of any kind with that bare or qualified name (a bare name several plugins share shows all).
    found = [c for kind in PLURAL for c in reg.components(kind) if name in (c.name, c.qualified_name())]
    if not found:
        plugin = name.split("/", 1)[0] if "/" in name else None
        info = reg.infos.get(plugin) if plugin else None
        if plugin and ((info is None and plugin in FIRST_PARTY) or (info is not None and info.status != "ok")):
            reg.get("case", name)  # raises: the plugin is not installed, disabled or broken, with the fix
        known = {n for kind in PLURAL for n in reg.names(kind)}
        raise UnknownComponent(f"nothing is registered as '{name}'.{suggest(name, known)} "
                               f"See: gradleak list {{{','.join(KIND_CHOICES)}}}")
    for cls in found:
        click.echo(f"{cls.qualified_name()}  ({cls.kind}, plugin '{cls.plugin}')")
        doc = inspect.cleandoc(cls.__doc__ or "")
        click.echo(textwrap.indent(doc.strip(), "  ") or "  (no description)")
        if getattr(cls, "paper", ""):
            click.echo(f"  paper: {cls.paper}")
        data = getattr(cls, "modality", None) if cls.kind == "case" else (
            ", ".join(sorted(cls.modalities)) if cls.modalities else "any")
        click.echo(f"  data: {data}")
        if cls.requires:
            click.echo(f"  requires: {', '.join(sorted(cls.requires))}")
        rows = describe_fields(cls.Config)
        if rows:
            click.echo("  parameters (--set key=value):" if cls.kind in ("case", "attack") else "  parameters:")
            for fname, ftype, default, help_text in rows:
                click.echo(f"    {fname} ({ftype}, default {default})" + (f": {help_text}" if help_text else ""))
        click.echo("")


@cli.command(epilog=EXAMPLES)
@click.option("--case", "case", required=True, help="Case to attack, e.g. vision/lenet (see: gradleak list cases).")
@click.option("--attack", "attack", required=True, help="Attack name, e.g. dlg (see: gradleak list attacks).")
@click.option("--defense", "defenses", multiple=True, metavar="NAME[:k=v,...]", help="Defense with parameters; repeatable.")
@click.option("--data", type=click.Path(), help="Your private data (folder of images, .npy, SMILES file, ...).")
@click.option("--batch-size", type=int, help="Samples per attacked batch (default: the case's).")
@click.option("--batches", type=int, help="How many consecutive batches to attack (default: all of --data, else 1).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--budget", type=int, help="The attack's main iteration budget.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Case or attack parameter; repeatable.")
@click.option("--out", type=click.Path(), help="Write truth, reconstruction and pictures here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout and nothing else.")
def run(case: str, attack: str, defenses: tuple[str, ...], data: str | None, batch_size: int | None,
        batches: int | None, seed: int, device: str, budget: int | None, sets: tuple[str, ...],
        out: str | None, as_json: bool) -> None:
    """Run one attack on a case and score the reconstruction."""
    from .runner import run as run_attack

    params = _parse_sets(sets)
    bars: dict[int, Any] = {}
    progress = None
    if not as_json and sys.stdout.isatty():
        from tqdm.auto import tqdm

        def progress(batch: int, step: int, total: int, objective: float) -> None:
            bar = bars.get(batch)
            if bar is None:
                bar = bars[batch] = tqdm(total=total, desc=f"batch {batch}", unit="it", leave=False)
            bar.n = step
            bar.set_postfix(objective=f"{objective:.3g}", refresh=False)
            bar.refresh()
    try:
        result = run_attack(case, attack, defenses=list(defenses) or ["none"], data=data, batch_size=batch_size,
                            batches=batches, seed=seed, device=device, budget=budget, sets=params, out=out,
                            progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    if as_json:
        click.echo(json.dumps(result.as_json()))
        return
    click.echo(f"{result.case} / {result.attack} / {', '.join(result.defenses)}  seed {result.seed}  "
               f"{result.device}  {result.seconds:.1f} s")
    _table([("metric", "mean")] + [(k, f"{v:.4g}") for k, v in result.metrics.items()])
    if result.success_rate is not None:
        click.echo(f"success rate: {result.success_rate:.0%}")
    for k, v in result.utility.items():
        click.echo(f"utility cost {k}: {v:.4g}")
    for k, v in result.artifacts.items():
        click.echo(f"{k}: {v}")


STUDY_EXAMPLES = """\b
Examples:
  gradleak study examples/cross_modality.toml --out results/cross
  gradleak study examples/cross_modality.toml --dry-run
  gradleak study examples/cross_modality.toml --out results/cross --resume --workers 2
  gradleak study big.toml --backend ray --address auto
"""


@cli.command(epilog=STUDY_EXAMPLES)
@click.argument("study_file", metavar="STUDY.toml", type=click.Path())
@click.option("--out", type=click.Path(), help="Study folder (results.sqlite, artifacts/); default results/<name>.")
@click.option("--workers", type=int, default=1, show_default=True, help="Runs at once (1: in this process).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", help="Ray cluster address (with --backend ray); default: a local Ray runtime.")
@click.option("--resume", is_flag=True, help="Continue a study in --out: finished runs are kept, the rest run.")
@click.option("--dry-run", is_flag=True, help="Print the expanded grid (runs and skips with reasons) and stop.")
@click.option("--report/--no-report", "make_report", default=True, show_default=True,
              help="Write report.html into the study folder at the end.")
def study(study_file: str, out: str | None, workers: int, backend: str, address: str | None, resume: bool,
          dry_run: bool, make_report: bool) -> None:
    """Run a study file: a grid of cases x attacks x defenses x seeds, stored in DIR/results.sqlite."""
    from .study import Study

    st = Study.from_toml(study_file)
    if dry_run:
        rows = [("status", "case", "attack", "defense", "seed", "origin", "reason")]
        rows += [(r["status"], r["case"], r["attack"], r["defense"], str(r["seed"]), r["origin"], r["reason"] or "-")
                 for r in st.dry_run()]
        _table(rows)
        click.echo(f"{len(st.runs)} run(s), {len(st.skipped)} skipped")
        return
    directory = out or f"results/{st.name}"
    frame = st.run(out=directory, workers=workers, backend=backend, address=address, resume=resume)
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    click.echo(f"study '{st.name}': " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f"  ({directory})")
    if make_report:
        from .report import write_report

        path = write_report(directory)
        click.echo(f"report: {path}")


@cli.command()
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("-o", "--output", type=click.Path(), help="HTML file to write; default DIR/report.html.")
def report(directory: str, output: str | None) -> None:
    """Render a study folder (or a run's --out folder) as one static HTML page."""
    from .report import write_report

    click.echo(write_report(directory, output))


@cli.command(epilog="""\b
Examples:
  gradleak tune --case vision/lenet --attack inverting-gradients --trials 20 --budget 500 --out tune/ig
  gradleak tune --case vision/lenet --attack dlg --param lr=0.1:2 --trials 10
""")
@click.option("--case", "case", required=True, help="Case whose public (surrogate) data is attacked.")
@click.option("--attack", "attack", required=True, help="Attack whose hyper-parameters are searched.")
@click.option("--trials", type=int, default=20, show_default=True, help="Optuna trials (resumes to this total).")
@click.option("--out", type=click.Path(), default="tune-out", show_default=True,
              help="Folder: results.sqlite (trials) and best.toml (a study preset).")
@click.option("--param", "param_ranges", multiple=True, metavar="NAME=LOW:HIGH|a,b",
              help="Search range of one attack parameter; repeatable.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Fixed case or attack parameter; repeatable.")
@click.option("--budget", type=int, help="The attack's iteration budget in every trial.")
@click.option("--batch-size", type=int, help="Surrogate samples per attacked batch.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def tune(case: str, attack: str, trials: int, out: str, param_ranges: tuple[str, ...], sets: tuple[str, ...],
         budget: int | None, batch_size: int | None, seed: int, device: str) -> None:
    """Search an attack's hyper-parameters with Optuna on the attacker's own public data."""
    from .tune import parse_params
    from .tune import tune as run_tune

    result = run_tune(case, attack, trials=trials, out=out, sets=_parse_sets(sets), params=parse_params(param_ranges),
                      budget=budget, batch_size=batch_size, seed=seed, device=device,
                      show_progress=sys.stderr.isatty())
    click.echo(f"best {result.metric} on public data: {result.best_value:.4g} after {result.trials} trial(s)")
    for k, v in sorted(result.best_params.items()):
        click.echo(f"  {k} = {v}")
    click.echo(f"preset: {result.preset}  (run it: gradleak study {result.preset})")


def parse_assignments(items: Sequence[str], option: str, form: str) -> dict[str, str]:
    """``KEY=VALUE`` command-line items as a dict; a malformed one is a one-line UsageError naming ``option``."""
    params = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"{option} {item!r}: expected {form}")
        params[key.strip()] = value.strip()
    return params


def _parse_sets(sets: tuple[str, ...]) -> dict[str, str]:
    return parse_assignments(sets, "--set", "KEY=VALUE, e.g. --set iterations=100")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for n, r in enumerate(rows):
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))


def main() -> None:
    try:
        registry().call_commands(cli)
    except GradleakError as exc:
        _fail(str(exc), 1)
    cli(prog_name="gradleak")


if __name__ == "__main__":
    main()
