"""`spofless lb`: a load balancer from a topology or standalone."""

from __future__ import annotations

import click

from spofless.cli._root import main, topology_of


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--component", help="With FILE: the load_balancer component to run.")
@click.option("--instance", type=int, default=0, show_default=True, help="With FILE: its index.")
@click.option("--listen", help="Standalone: host:port to listen on.")
@click.option(
    "--backend", "backends", multiple=True, help="Standalone: host:port[,weight]; repeat."
)
@click.option(
    "--backup",
    "backup_backends",
    multiple=True,
    help="Standalone: host:port[,weight] that gets requests only while no --backend can"
    " (HAProxy's backup server); repeat.",
)
@click.option(
    "--mode",
    type=click.Choice(["http", "tcp"]),
    default="http",
    show_default=True,
    help="Standalone: HTTP/1.1 or plain TCP.",
)
@click.option(
    "--algorithm",
    type=click.Choice(
        ["round_robin", "weighted_round_robin", "least_connections", "two_choices", "hash"]
    ),
    default="round_robin",
    show_default=True,
    help="Standalone: how a backend is picked.",
)
@click.option(
    "--hash-key",
    default="source",
    show_default=True,
    help="Standalone, hash: source|path|header:NAME|cookie:NAME",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Standalone: worker processes sharing the port.",
)
@click.option("--admin", help="Standalone: host:port of the admin API.")
@click.option(
    "--admin-token",
    envvar="SPOFLESS_ADMIN_TOKEN",
    show_envvar=True,
    help="Standalone: bearer token of the admin API.",
)
@click.option(
    "--health",
    type=click.Choice(["tcp", "http"]),
    help="Standalone: health check type [default: http GET / (any status < 500) in http mode,"
    " else tcp].",
)
@click.option(
    "--health-path", default="/", show_default=True, help="Standalone, http check: the path."
)
@click.option(
    "--health-send",
    help=r"Standalone, tcp check: bytes to send after connecting (\r \n \t \\ are decoded).",
)
@click.option(
    "--health-expect",
    help="Standalone, tcp check: what the answer must contain; without it a connect alone counts,"
    " which cannot see a frozen backend.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="Standalone: any option of a topology's `lb:` mapping, e.g. --set header_timeout=2"
    " --set max_conns_per_backend=100; repeat.",
)
def lb(
    file: str | None,
    component: str | None,
    instance: int,
    listen: str | None,
    backends: tuple[str, ...],
    backup_backends: tuple[str, ...],
    mode: str,
    algorithm: str,
    hash_key: str,
    workers: int,
    admin: str | None,
    admin_token: str | None,
    health: str | None,
    health_path: str,
    health_send: str | None,
    health_expect: str | None,
    sets: tuple[str, ...],
) -> None:
    """Run a load balancer: from a topology FILE, or standalone with --listen and --backend.

    \b
      spofless lb shop.yaml --component lb --instance 0
      spofless lb --listen 127.0.0.1:8080 --backend 127.0.0.1:9001 --backend 127.0.0.1:9002

    SIGHUP reloads (FILE mode re-reads the file), SIGTERM stops gracefully. The admin
    API (--admin, or the component's `admin_port:`) serves /status and /metrics, drains,
    disables and enables backends, and adds backends to a route and removes them
    (drained first) at runtime; those changes and the drains survive a SIGHUP reload
    (docs/load-balancer.md).
    """
    from pydantic import ValidationError

    from spofless.lb import LbSettings, lb_settings, run_lb, settings_from_flags
    from spofless.topology import CannotRunError, HealthCheck, LbOptions

    if file is not None:
        if listen or backends or backup_backends:
            raise CannotRunError("give either FILE or --listen/--backend, not both")
        if sets or health or health_send is not None or health_expect is not None:
            raise CannotRunError(
                "--set and --health* are for standalone use; with FILE use the component's"
                " `lb:` mapping and the target's `health:`"
            )
        if component is None:
            raise CannotRunError("FILE needs --component (the load_balancer to run)")
        path, comp = file, component

        def build() -> LbSettings:
            return lb_settings(topology_of(path), comp, instance)

    else:
        if not listen:
            raise CannotRunError("give FILE --component C, or --listen and --backend")
        given: dict[str, str] = {"algorithm": algorithm, "hash_key": hash_key}
        for item in sets:
            name, eq, value = item.partition("=")
            if not eq:
                raise CannotRunError(f"--set {item!r}: give NAME=VALUE")
            given[name.strip()] = value.strip()
        try:
            options = LbOptions.model_validate(given)
            check = None
            if health or health_send is not None or health_expect is not None:
                fields: dict[str, object] = {"type": health or "tcp"}
                if (health or "tcp") == "http":
                    fields["path"] = health_path
                if health_send is not None:
                    fields["send"] = _unescape(health_send)
                if health_expect is not None:
                    fields["expect"] = _unescape(health_expect)
                check = HealthCheck.model_validate(fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise CannotRunError(
                f"invalid option {where or 'health check'}: {err['msg']}"
            ) from None
        listen_ = listen

        def build() -> LbSettings:
            return settings_from_flags(
                listen=listen_,
                backends=list(backends),
                backups=list(backup_backends),
                mode=mode,
                workers=workers,
                admin=admin,
                admin_token=admin_token,
                health=check,
                options=options,
            )

    from spofless._logging import setup_logging
    from spofless.cli._ports import ensure_free

    settings = build()
    setup_logging(settings.instance)
    ensure_free(
        [
            ("listen", settings.listen_host, settings.listen_port),
            ("admin", settings.admin_host, settings.admin_port),
        ]
    )
    run_lb(settings, reload=build)


def _unescape(text: str) -> str:
    """`\\r`, `\\n`, `\\t` and `\\\\` typed on a command line, as the characters."""
    table = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
