"""The audit log: who changed what from the command line, and when.

A frozen copy of the schema as it stood, independent of ``t2ctl.db.models``.
"""

from peewee import BigAutoField, CharField, DateTimeField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class AuditEvent(Base):
        id = BigAutoField()
        at = DateTimeField(index=True)
        os_user = CharField(max_length=64)
        login_user = CharField(max_length=64, null=True)
        host = CharField(max_length=255)
        action = CharField(max_length=64, index=True)
        target = CharField(max_length=255)
        details = TextField()

    db.create_tables([AuditEvent])


def down(migrator, db):
    db.execute_sql('DROP TABLE IF EXISTS "audit_event"')
