"""The job table, the ticks of periodic tasks, and the sandbox provisioner's sales orders.

A frozen copy of the schema as it stood, independent of ``t2ctl.db.models``.
"""

from peewee import (
    BigAutoField,
    BigIntegerField,
    CharField,
    DateTimeField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Job(Base):
        id = BigAutoField()
        task = CharField(max_length=64)
        payload = TextField()
        state = CharField(max_length=16)
        priority = IntegerField()
        run_at = DateTimeField()
        attempts = IntegerField()
        max_attempts = IntegerField()
        unique_key = CharField(max_length=200, null=True)
        worker = CharField(max_length=128, null=True)
        lease_until = DateTimeField(null=True)
        last_error = TextField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        finished_at = DateTimeField(null=True)

        class Meta:
            indexes = (
                (("state", "priority", "run_at"), False),
                (("state", "lease_until"), False),
                (("state", "finished_at"), False),
            )

    class ScheduleRun(Base):
        task = CharField(max_length=64)
        due_at = DateTimeField()
        job = BigIntegerField()
        created_at = DateTimeField()

        class Meta:
            indexes = ((("task", "due_at"), True),)

    class SandboxSalesOrder(Base):
        reference_number = CharField(max_length=64, index=True)
        created_at = DateTimeField()

    db.create_tables([Job, ScheduleRun, SandboxSalesOrder])
    # A partial index: a key blocks a duplicate only while its job is pending, on both engines.
    db.execute_sql(
        "CREATE UNIQUE INDEX job_unique_pending ON job (unique_key) "
        "WHERE state IN ('queued', 'running')"
    )


def down(migrator, db):
    for table in ("sandbox_sales_order", "schedule_run", "job"):
        db.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
