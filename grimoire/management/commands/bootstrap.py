"""Everything `make run` does before starting processes; safe to run on every start."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Migrate, create the cache table, collect static files, create an admin user if none exists, load demo data into an empty database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-demo", action="store_true", help="Do not load demo data.")
        parser.add_argument("--no-static", action="store_true", help="Skip collectstatic.")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("check", fail_level="ERROR")
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        call_command("createcachetable", verbosity=0)
        if not options["no_static"]:
            call_command("collectstatic", interactive=False, verbosity=0)
        self._ensure_admin()
        # The starter knowledge base: new starter spells are added, local edits are kept.
        call_command("import_spells", "--starter", "--skip-existing", stdout=self.stdout)
        if not options["no_demo"]:
            call_command("load_demo", stdout=self.stdout)
        self.stdout.write(
            self.style.SUCCESS(f"Grimoire is ready. Open the admin at {settings.PUBLIC_URL}/admin/")
        )

    def _ensure_admin(self) -> None:
        User = get_user_model()
        credentials = settings.DATA_DIR / "admin-credentials.txt"
        if User.objects.filter(is_superuser=True).exists():
            if credentials.exists():
                self.stdout.write(f"Admin login: see {credentials}")
            return
        username = os.environ.get("GRIMOIRE_ADMIN_USER", "admin")
        # Never a fixed password: a random one, printed once and kept in a 0600 file for later.
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"username: {username}\npassword: {password}\n")
        self.stdout.write(
            self.style.WARNING(
                f"Created admin user {username!r} with password {password!r} "
                f"(also saved in {credentials}; change it after logging in)."
            )
        )
