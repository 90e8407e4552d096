"""``backend-jupyter``: the command line of the product."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    from .server.main import default_data_dir

    parser.add_argument(
        "--data-dir", type=Path, default=default_data_dir(),
        help="where the embedded server keeps keypairs, sessions and vfolders (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backend-jupyter",
        description="Run Jupyter cells on Backend.AI compute sessions.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    _server_parser(sub)

    env = sub.add_parser("env", help="print shell exports that point the SDK at the running server")
    _data_dir_arg(env)

    keypair = sub.add_parser("keypair", help="manage the embedded server's keypairs")
    keypair_sub = keypair.add_subparsers(dest="keypair_command", required=True)
    create = keypair_sub.add_parser("create", help="add a keypair and print it as shell exports")
    _data_dir_arg(create)

    _install_parser(sub)

    demo = sub.add_parser("demo", help="run the getting-started notebook headless on the Backend.AI Python kernel")
    demo.add_argument("--output-dir", type=Path, default=None,
                      help="where the executed notebook and its HTML go (default: ./backend-jupyter-demo)")
    demo.add_argument("--notebook", type=Path, default=None, help="another notebook to run instead")

    lab = sub.add_parser("lab", help="start JupyterLab with the kernelspec and server ready (extra args go to jupyter lab)")
    lab.add_argument("lab_args", nargs=argparse.REMAINDER, help="arguments for jupyter lab")

    sub.add_parser("doctor", help="check configuration, server, keys and kernelspec; print the fix for each problem")
    return parser


def _server_parser(sub) -> None:
    from .server.main import DEFAULT_HOST, DEFAULT_PORT

    server = sub.add_parser("server", help="run the embedded Backend.AI-compatible API server")
    server.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s)")
    server.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port to bind, 0 for any free port (default: %(default)s)")
    _data_dir_arg(server)
    server.add_argument("--idle-timeout", type=float, default=3600.0,
                        help="destroy sessions unused for this many seconds, 0 = never (default: %(default)s)")
    server.add_argument("--exec-timeout", type=float, default=0.0,
                        help="interrupt runs longer than this many seconds, 0 = never (default: %(default)s)")
    server.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    server.add_argument("--certfile", type=Path, default=None, metavar="PEM",
                        help="serve HTTPS with this certificate (chain) file; with --keyfile")
    server.add_argument("--keyfile", type=Path, default=None, metavar="PEM", help="the certificate's private key")
    control = server.add_mutually_exclusive_group()
    control.add_argument("--status", action="store_true",
                         help="show the server running on the data dir: where, since when, its sessions")
    control.add_argument("--stop", action="store_true",
                         help="stop the server running on the data dir (refused while a session is busy)")
    server.add_argument("--force", action="store_true", help="with --stop: stop even while sessions are busy")


def _install_parser(sub) -> None:
    install = sub.add_parser("install", help="install the Backend.AI kernelspec(s) into Jupyter")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--sys-prefix", action="store_true", help="install into sys.prefix (default)")
    where.add_argument("--prefix", help="install under this prefix")
    install.add_argument("--image", help="the session image of a profile kernelspec (e.g. python:3.11)")
    install.add_argument("--display-name", help="display name of the profile (e.g. \"Backend.AI PyTorch · 1 GPU\")")
    install.add_argument("--name", help="kernelspec key of the profile (default: derived from the display name, "
                                        "else the image)")
    install.add_argument("-r", "--resource", action="append", default=[], metavar="SLOT=VALUE",
                         help="resource slot of the sessions this kernelspec creates, e.g. cpu=2, mem=4g, "
                              "cuda.shares=1 (repeatable)")
    install.add_argument("-m", "--mount", action="append", default=[], metavar="FOLDER[:ALIAS]",
                         help="vfolder the sessions this kernelspec creates mount (repeatable)")
    install.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                         help="environment variable of the sessions this kernelspec creates (repeatable)")
    install.add_argument("--list", action="store_true", help="list the installed Backend.AI kernelspecs")
    install.add_argument("--remove", metavar="NAME", help="remove an installed Backend.AI kernelspec")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "server":
        return _server(parser, args)
    if args.command in ("env", "keypair"):
        from .server.keys import KeyStore
        from .server.main import DEFAULT_HOST, DEFAULT_PORT, running_endpoint

        endpoint = running_endpoint(args.data_dir)
        keys = KeyStore(args.data_dir)
        if args.command == "env":
            if endpoint is None:
                print(f"error: no embedded server is running on {args.data_dir}; "
                      "start one with `backend-jupyter server`", file=sys.stderr)
                return 1
            sys.stdout.write(keys.default().exports(endpoint))
        else:
            keypair = keys.add()
            sys.stdout.write(keypair.exports(endpoint or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"))
        return 0
    if args.command == "install":
        return _install(args)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.output_dir, args.notebook)
    if args.command == "lab":
        from .launch import run_lab

        return run_lab([*extra, *args.lab_args])
    if args.command == "doctor":
        from .launch import doctor

        return doctor()
    return 2


def _server(parser: argparse.ArgumentParser, args) -> int:
    """Run the server in the foreground, or show or stop the one running on the data dir."""
    if args.force and not args.stop:
        parser.error("--force goes with --stop")
    if args.status or args.stop:
        from .serverctl import status_command, stop_command

        return stop_command(args.data_dir, force=args.force) if args.stop else status_command(args.data_dir)
    if (args.certfile is None) != (args.keyfile is None):
        parser.error("--certfile and --keyfile go together")
    from .server.main import run

    return run(args.host, args.port, args.data_dir, idle_timeout=args.idle_timeout,
               exec_timeout=args.exec_timeout, verbose=args.verbose, certfile=args.certfile, keyfile=args.keyfile)


def _install(args) -> int:
    from .commands import CommandError
    from .config import ConfigError
    from .kernelspecs import install

    if args.list:
        return _list_kernelspecs()
    if args.remove:
        return _remove_kernelspec(args.remove)
    try:
        settings = _session_settings(args)
        targets = _install_targets(args)
    except (CommandError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for key, image, display_name in targets:
        path = install(key, user=args.user, prefix=args.prefix, image=image, display_name=display_name,
                       **settings)
        print(f"Installed kernelspec in {path}")
    return 0


def _session_settings(args) -> dict:
    """The session settings of ``install``'s options, checked."""
    from .commands import pairs
    from .config import parse_mounts, parse_resources

    return {
        "environ": pairs(args.env, "--env"),
        "resources": parse_resources(pairs(args.resource, "--resource"), "--resource"),
        "mounts": parse_mounts(",".join(args.mount), "--mount"),
    }


def _install_targets(args) -> list[tuple[str, str | None, str | None]]:
    """``(key, image, display name)`` to install: the profile the options name, else the shipped
    kernelspecs."""
    from .kernelspecs import IMAGES, kernelspec_key

    if not (args.image or args.display_name or args.name):
        return [(key, None, None) for key in IMAGES]
    image = args.image or IMAGES["python"][0]
    key = kernelspec_key(args.name, args.display_name, args.image)
    return [(key, image, args.display_name or f"Backend.AI {image}")]


def _list_kernelspecs() -> int:
    import json

    from .kernelspecs import installed

    for name, path in sorted(installed().items()):
        spec = json.loads((Path(path) / "kernel.json").read_text())
        settings = spec.get("metadata", {}).get("backend_jupyter", {})
        shown = [f"image={settings.get('image', '?')}"]
        if settings.get("resources"):
            shown.append("resources=" + ",".join(f"{k}={v}" for k, v in settings["resources"].items()))
        if settings.get("mounts"):
            shown.append("mounts=" + ",".join(settings["mounts"]))
        if settings.get("environ"):
            shown.append("env=" + ",".join(settings["environ"]))  # names only: values may be secret
        print(f"{name:30} {spec.get('display_name', '')!r:36} {'  '.join(shown)}  {path}")
    return 0


def _remove_kernelspec(name: str) -> int:
    from .kernelspecs import remove

    try:
        print(f"Removed {remove(name)}")
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
