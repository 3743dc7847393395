# The database cache (the embedded default's shared cache: provider cooldowns, throttles) needs
# its table; creating it in a migration means `migrate` alone prepares a database, tests included.
from __future__ import annotations

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("grimoire", "0001_initial")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
