"""swarm: a multi-agent coding swarm orchestrator."""

__version__ = "0.1.0"

#: the name it is installed under (`pip install swarm-mesh`): `swarm` on the package index
#: is an unrelated game; the import package and the command stay `swarm`
DIST_NAME = "swarm-mesh"


def version() -> str:
    """The installed distribution's version, else (a source tree on sys.path) this one."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DIST_NAME)
    except PackageNotFoundError:
        return __version__
