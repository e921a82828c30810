"""The command line: parse arguments, call the core, and turn SbatchmanError into one line + exit.

`main()` is the only place that exits. Commands return their exit code; every user mistake
arrives as a SbatchmanError and is printed as one line, never as a traceback.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from sbatchman import __version__
from sbatchman.cliopts import (
    AcceptOpt,
    AliasOpt,
    BackendOpt,
    BatchOpt,
    ClusterOpt,
    ConfigOpt,
    ConnectOpt,
    DeleteOpt,
    DryRunOpt,
    ExcludeOpt,
    GitignoreOpt,
    JobsOpt,
    JsonOpt,
    MaxDeleteOpt,
    QuietOpt,
    StallOpt,
    VerboseOpt,
    WatchOpt,
)
from sbatchman.errors import ExitCode, SbatchmanError

app = typer.Typer(
    help="Keep your working directories in step with many HPC clusters (rsync or SFTP).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # subcommands inherit it
)
config_app = typer.Typer(help="Create or locate the config file.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@dataclass
class _Invocation:
    """What main must know about the command that ran (click hands it down as ctx.obj)."""

    status_is_its_work: bool = False  # sync, config init: lost output does not change it


def _did_its_work(ctx: typer.Context) -> None:
    invocation = ctx.find_object(_Invocation)
    if invocation is not None:
        invocation.status_is_its_work = True


def _config_file(config: Path | None) -> Path:
    """--config, else $SBATCHMAN_CONFIG, else the platform default; `~` expanded in all."""
    from sbatchman.config import default_config_path
    from sbatchman.configpaths import expand_user

    return expand_user(str(config), "--config") if config is not None else default_config_path()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sbatchman {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Push your working directories to many HPC clusters at once (rsync or SFTP)."""


@app.command()
def sync(
    ctx: typer.Context,
    config: ConfigOpt = None,
    cluster: ClusterOpt = [],  # noqa: B006 - typer needs a literal default
    alias: AliasOpt = [],  # noqa: B006
    exclude: ExcludeOpt = [],  # noqa: B006
    dry_run: DryRunOpt = False,
    backend: BackendOpt = None,
    gitignore: GitignoreOpt = None,
    jobs: JobsOpt = 8,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    batch: BatchOpt = False,
    accept_new_host_keys: AcceptOpt = False,
    connect_timeout: ConnectOpt = None,
    stall_timeout: StallOpt = None,
    delete: DeleteOpt = False,
    max_delete: MaxDeleteOpt = 1000,
    watch: WatchOpt = False,
) -> int:
    """Push every sync_dir to every cluster (or those chosen with -c / -a)."""
    _did_its_work(ctx)
    return _transfer("sync", locals())


@app.command()
def fetch(
    ctx: typer.Context,
    config: ConfigOpt = None,
    cluster: ClusterOpt = [],  # noqa: B006 - typer needs a literal default
    alias: AliasOpt = [],  # noqa: B006
    exclude: ExcludeOpt = [],  # noqa: B006
    dry_run: DryRunOpt = False,
    backend: BackendOpt = None,
    jobs: JobsOpt = 8,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    batch: BatchOpt = False,
    accept_new_host_keys: AcceptOpt = False,
    connect_timeout: ConnectOpt = None,
    stall_timeout: StallOpt = None,
) -> int:
    """Bring every fetch_dir back from its cluster (or those of -c / -a).

    Each file comes when it is missing here or differs, unless the local copy is newer.
    """
    _did_its_work(ctx)
    return _transfer("fetch", locals())


def _transfer(command: str, flags: dict[str, Any]) -> int:
    """sync or fetch: one Request from the flags, the core's Results, one report."""
    from sbatchman import config as configuration
    from sbatchman.model import Direction, Request, exit_code
    from sbatchman.precedence import batch_for, timeout_for
    from sbatchman.report import ConsoleReporter, Style
    from sbatchman.ssh.endpoint import SshOptions

    if command == "fetch":
        from sbatchman.fetch import fetch as run
    else:
        from sbatchman.push import sync as run
    f = _Flags(**{k: v for k, v in flags.items() if k != "ctx"})
    direction: Direction = "fetch" if command == "fetch" else "push"
    reporter = ConsoleReporter(Style(f.verbose, f.quiet, f.json_out, f.dry_run, direction))
    try:
        cfg = configuration.load(_config_file(f.config))
        settings = cfg.settings
        request = Request(
            clusters=tuple(f.cluster),
            aliases=tuple(f.alias),
            excludes=tuple(f.exclude),
            backend=f.backend,
            gitignore=f.gitignore,
            dry_run=f.dry_run,
            jobs=f.jobs,
            delete=f.delete,
            max_delete=f.max_delete,
            ssh=SshOptions(
                batch=batch_for(f.batch, sys.stdin.isatty()),
                accept_new_host_keys=f.accept_new_host_keys,
                connect_timeout=timeout_for(f.connect_timeout, settings.connect_timeout),
                stall_timeout=timeout_for(f.stall_timeout, settings.stall_timeout),
            ),
        )
        if f.watch:
            return _watch(cfg, request, reporter, f)
        with reporter:
            results = run(cfg, request, reporter)
    except SbatchmanError as err:  # nothing was moved; a script still gets its one document
        reporter.refused(str(err), err.exit_code)
        raise
    except KeyboardInterrupt:
        reporter.refused("interrupted", ExitCode.INTERRUPTED)
        raise
    reporter.summary(results)
    return exit_code(results)


@dataclass
class _Flags:
    """The flags sync and fetch share, as typer hands them over."""

    config: Path | None
    cluster: list[str]
    alias: list[str]
    exclude: list[str]
    dry_run: bool
    backend: str | None
    jobs: int
    json_out: bool
    quiet: bool
    verbose: bool
    batch: bool
    accept_new_host_keys: bool
    connect_timeout: float | None
    stall_timeout: float | None
    gitignore: bool | None = None
    delete: bool = False  # sync only
    max_delete: int = 1000
    watch: bool = False


def _watch(cfg: Any, request: Any, reporter: Any, f: _Flags) -> int:
    """sync --watch: a report per pass, and 0 at Ctrl-C only if every target was up to date."""
    from sbatchman.errors import UsageError
    from sbatchman.watch import watch
    from sbatchman.watchreport import WatchView

    if f.dry_run:
        raise UsageError("--watch pushes every change; it cannot be combined with --dry-run")
    view = WatchView(f.json_out, f.quiet)
    with reporter:
        results = watch(cfg, request, reporter, view)
    failing = [r for r in results if r.status != "ok"]
    return ExitCode.FAILED if failing else ExitCode.OK


@app.command("ls")
def list_files(
    config: ConfigOpt = None,
    cluster: ClusterOpt = [],  # noqa: B006
    alias: AliasOpt = [],  # noqa: B006
    exclude: ExcludeOpt = [],  # noqa: B006
    gitignore: GitignoreOpt = None,
    explain: Annotated[
        list[str],
        typer.Option(
            "--explain",
            metavar="PATH",
            help="Say whether PATH is pushed, and why (repeatable: each path in turn);"
            " with --fetch, whether it is fetched (connects).",
        ),
    ] = [],  # noqa: B006
    fetch: Annotated[
        bool,
        typer.Option("--fetch", help="Each fetch_dir's files instead (connects; writes nothing)."),
    ] = False,
    backend: BackendOpt = None,
) -> int:
    """Show the files a sync would consider, without touching the network.

    With --fetch: the files each fetch_dir would bring, or (--explain) whether PATH, a path
    of a fetch_dir, is fetched; this connects to its cluster."""
    from sbatchman import config as configuration
    from sbatchman.fetchlisting import fetch_ls
    from sbatchman.listing import ls_lines
    from sbatchman.model import Request

    request = Request(tuple(cluster), tuple(alias), tuple(exclude), backend, gitignore)
    cfg = configuration.load(_config_file(config))
    listed = fetch_ls(cfg, request, explain, sys.stdin.isatty()) if fetch else None
    lines, code = listed or (ls_lines(cfg, request, explain), 0)
    for line in lines:
        typer.echo(line)
    return code


@config_app.command("init")
def config_init(ctx: typer.Context, config: ConfigOpt = None) -> int:
    """Write a commented starter config (never overwrites one)."""
    _did_its_work(ctx)
    from sbatchman.starter import write_starter

    path = write_starter(_config_file(config), Path.cwd())
    typer.echo(f"wrote {path}; its `demo` cluster pushes {Path.cwd()} into a local folder")
    return 0


@config_app.command("path")
def config_path(config: ConfigOpt = None) -> int:
    """Print where sbatchman looks for its config."""
    typer.echo(str(_config_file(config)))
    return 0


def _whole_short_help(*apps: typer.Typer) -> None:
    """The command list shows each command's first docstring line whole; click would cut it
    to the screen's width minus the names, ending in `...`."""
    for each in apps:
        for info in each.registered_commands:
            doc = info.callback.__doc__ if info.callback is not None else None
            if doc and info.short_help is None:
                info.short_help = doc.strip().splitlines()[0]


_whole_short_help(app, config_app)


def _as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place that turns errors into messages and exit codes."""
    from sbatchman.names import show_text
    from sbatchman.output import Guarded

    args = list(sys.argv[1:] if argv is None else argv)
    streams = sys.stdout, sys.stderr
    out, err = Guarded(sys.stdout), Guarded(sys.stderr)
    sys.stdout, sys.stderr = out, err
    # A closed terminal (SIGHUP) or a polite kill (SIGTERM) stops a sync as Ctrl-C does:
    # transfers stopped, no partial file at a final path, ssh masters and their folders gone.
    stops = (signal.SIGTERM, signal.SIGHUP)
    previous = {stop: signal.signal(stop, _as_interrupt) for stop in stops}
    try:
        invocation = _Invocation()
        code = _run(args, invocation)
        out.flush()
        if out.worth_saying():
            assert out.lost is not None
            reason = out.lost.strerror or str(out.lost)
            typer.echo(show_text(f"sbatchman: error: cannot write to stdout: {reason}"), err=True)
            if not invocation.status_is_its_work:
                code = code or 1  # ls, config path, --help: their output is their result
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = streams
    sys.exit(code)


def _run(args: list[str], invocation: _Invocation) -> int:
    """The command's own exit status; every error as one line on stderr."""
    from sbatchman.names import show_text

    try:
        code = app(args=args, prog_name="sbatchman", standalone_mode=False, obj=invocation)
    except SbatchmanError as err:
        typer.echo(show_text(f"sbatchman: error: {err}"), err=True)
        return err.exit_code
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("sbatchman: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except typer.TyperException as err:  # the parser's usage errors (typer's vendored click)
        ctx = getattr(err, "ctx", None)
        if type(err).__name__ == "NoArgsIsHelpError":  # `sbatchman config`: show its help
            err.show()  # type: ignore[attr-defined]
        else:  # one line, and where help is, as rsync and git do
            formatted = getattr(err, "format_message", None)
            message = (formatted() if callable(formatted) else str(err)).rstrip(".")
            command = ctx.command_path if ctx is not None else "sbatchman"
            line = f"sbatchman: error: {message} (see `{command} --help`)"
            typer.echo(show_text(line), err=True)
            _refuse_in_json(ctx, args, message, getattr(err, "exit_code", ExitCode.USAGE))
        return int(getattr(err, "exit_code", ExitCode.USAGE))
    return code if isinstance(code, int) else 0


def _refuse_in_json(ctx: object, args: list[str], message: str, code: int) -> None:
    """`sync --json` (or fetch) with a mistake the parser caught: the script still gets its
    document.

    The flags are read again leniently (click's resilient parsing), as completion reads them.
    """
    command = getattr(ctx, "command", None)
    name = args[0] if args[:1] in (["sync"], ["fetch"]) else None
    if name is None or command is None or getattr(command, "name", None) != name:
        return
    try:
        lenient = command.make_context(name, args[1:], resilient_parsing=True)
    except Exception:  # nothing readable: no document; the line was said
        return
    if lenient.params.get("json_out"):
        from sbatchman.report import refusal

        typer.echo(refusal(message, code, bool(lenient.params.get("dry_run"))))
