"""Initialise Superset's metadata database in one process: migrations, roles and permissions, the admin (the
control room's service account). One process instead of three `superset` commands saves two imports of Superset
(about a minute on a loaded 2-core machine). Run with Superset's virtualenv: python bootstrap.py USER PASSWORD."""

import sys

from superset.cli.main import superset


def main(username: str, password: str) -> None:
    """db upgrade, init, then the admin account (skipped by Superset when it exists)."""
    for args in (
        ["db", "upgrade"],
        ["init"],
        ["fab", "create-admin", "--username", username, "--password", password, "--firstname", "Lakehouse",
         "--lastname", "Control Room", "--email", f"{username}@lakehouse.invalid"],
    ):
        superset.main(args=args, prog_name="superset", standalone_mode=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
