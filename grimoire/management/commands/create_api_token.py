from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from grimoire.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for USER and print it once (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="default", help="A label to tell tokens apart.")
        parser.add_argument(
            "--expires-days", type=int, default=None, help="Expire after N days (default: never)."
        )
        parser.add_argument(
            "--quiet-token",
            action="store_true",
            help="Print only the token (for scripts: TOKEN=$(manage.py create_api_token ...)).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: options["username"]})
        except User.DoesNotExist as exc:
            raise CommandError(f"No user named {options['username']!r}.") from exc
        days = options["expires_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-days must be a positive number of days.")
        token, raw = api_token_create(
            user=user,
            name=options["name"][:100],
            expires_in=timedelta(days=days) if days else None,
        )
        if options["quiet_token"]:
            self.stdout.write(raw)
            return
        self.stdout.write(f"Token for {user} ({token.name}); it is shown only once:\n\n    {raw}\n")
        self.stdout.write("Use it as:  Authorization: Bearer <token>")
