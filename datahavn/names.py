"""Rules for user and project names, and the unix identities derived from them.

Names become unix accounts and groups, folder names and URL path segments, so
they are checked strictly and in one place, by the CLI before it sends
anything and by the hub before it provisions anything.
"""

import hashlib
import re

#: Project names: lower-case letters, digits and ``_``; no ``-``, so that the
#: account name ``dh-<project>-<user>`` splits unambiguously.
PROJECT_RE = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
#: User names: what JupyterHub, unix and URLs all accept without escaping.
USER_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

#: Dataset names: a folder ``<name>.vcz`` in the project's data folder; no ``/``, no leading dot.
DATASET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

#: Longest unix user or group name that useradd accepts.
UNIX_NAME_MAX = 32


class InvalidName(ValueError):
    """A user or project name that Datahavn does not accept."""


def _check(kind: str, name: object, pattern: re.Pattern, rule: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{kind} name is empty")
    if not pattern.fullmatch(name):
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise InvalidName(f"invalid {kind} name {shown!r}: {rule}")
    return name


def check_project(name: object) -> str:
    """Return ``name`` if it is a valid project name, else raise InvalidName."""
    return _check(
        "project",
        name,
        PROJECT_RE,
        "use 1-16 characters: a lower-case letter, then lower-case letters, digits or _",
    )


def check_user(name: object) -> str:
    """Return ``name`` if it is a valid user name, else raise InvalidName."""
    return _check(
        "user",
        name,
        USER_RE,
        "use 1-32 characters: a lower-case letter, then lower-case letters, digits, _ or -",
    )


def check_dataset(name: object) -> str:
    """Return ``name`` if it is a valid dataset name, else raise InvalidName."""
    return _check(
        "dataset",
        name,
        DATASET_RE,
        "use 1-64 characters: lower-case letters, digits, _ or -, starting with a letter or digit",
    )


#: A dataset ``name`` is the store ``<name>.vcz`` in its project's data folder, with its manifest inside.
DATASET_SUFFIX = ".vcz"
DATASET_MANIFEST = "manifest.json"


def dataset_store_name(name: str) -> str:
    """The folder name of dataset ``name``'s store (the name checked first)."""
    return check_dataset(name) + DATASET_SUFFIX


def project_group(project: str) -> str:
    """The unix group of a project: every member account's only group."""
    return f"dh-{check_project(project)}"


def account_name(user: str, project: str) -> str:
    """The unix account that runs ``user``'s server in ``project``.

    One account per (user, project): two servers of one person in two projects
    cannot signal, ptrace or read each other. Long combinations get a hashed
    user part; the account's GECOS field records the pair, and the spawner
    refuses an account whose GECOS does not match (see :func:`account_gecos`).
    """
    check_user(user)
    check_project(project)
    name = f"dh-{project}-{user}"
    if len(name) > UNIX_NAME_MAX:
        digest = hashlib.sha256(user.encode()).hexdigest()[:10]
        name = f"dh-{project}-{digest}"
    return name


def account_gecos(user: str, project: str) -> str:
    """The GECOS field that ties an account to its (user, project)."""
    return f"datahavn {project}/{user}"
