"""Cheaper webhook delivery rows: each delivery is one INSERT on the receiver's hot path.

- delivery_id unique by a constraint: `unique=True` also built a varchar_pattern_ops index on
  PostgreSQL that no query uses; `event` loses its index (a handful of values, filtered only in
  the admin, where received_at's index orders the scan).
- On PostgreSQL built with lz4, payloads (several KB, so compressed and stored out of line) use lz4,
  which compresses JSON several times faster than the default pglz.
"""

from django.db import migrations, models


def payload_lz4(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        # enumvals lists only the methods this server was built with.
        cursor.execute(
            "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
            "AND 'lz4' = ANY(enumvals)"
        )
        if cursor.fetchone() is None:
            return
        table = connection.ops.quote_name(
            apps.get_model("spells", "WebhookDelivery")._meta.db_table
        )
        cursor.execute(f"ALTER TABLE {table} ALTER COLUMN payload SET COMPRESSION lz4")


class Migration(migrations.Migration):
    dependencies = [
        ("spells", "0003_alter_spellmatch_options"),
    ]

    operations = [
        migrations.AlterField(
            model_name="webhookdelivery",
            name="delivery_id",
            field=models.CharField(max_length=100),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="event",
            field=models.CharField(max_length=50),
        ),
        migrations.AddConstraint(
            model_name="webhookdelivery",
            constraint=models.UniqueConstraint(
                fields=("delivery_id",), name="webhookdelivery_unique_delivery"
            ),
        ),
        # Only a storage setting: nothing to undo when migrating back.
        migrations.RunPython(payload_lz4, migrations.RunPython.noop),
    ]
