"""Partners, their API keys, the product catalogue and orders.

A frozen copy of the schema as it stood, independent of ``t2ctl.db.models``, so that later
changes to the models never change what this migration does.
"""

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Partner(Base):
        name = CharField(max_length=64, unique=True)
        webhook_url = TextField()
        webhook_secret = TextField()
        allowed_ips = TextField()
        rate_limit_per_minute = IntegerField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class ApiKey(Base):
        key_id = CharField(max_length=32, unique=True)
        partner = ForeignKeyField(Partner, on_delete="CASCADE")
        key_hash = CharField(max_length=64, unique=True)
        created_at = DateTimeField()
        expires_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)
        last_used_at = DateTimeField(null=True)

    class Product(Base):
        product_id = CharField(max_length=64, unique=True)
        name = CharField(max_length=200)
        description = TextField()
        price_minor = BigIntegerField()
        currency = CharField(max_length=3)
        term_months = IntegerField()
        active = BooleanField()
        created_at = DateTimeField()
        updated_at = DateTimeField()

    class Order(Base):
        partner = ForeignKeyField(Partner, on_delete="RESTRICT")
        order_id = CharField(max_length=64)
        status = CharField(max_length=16)
        product = ForeignKeyField(Product, on_delete="RESTRICT")
        quantity = IntegerField()
        customer_id = CharField(max_length=64)
        customer_name = CharField(max_length=200)
        customer_email = TextField()
        customer_phone = TextField(null=True)
        amount_minor = BigIntegerField()
        currency = CharField(max_length=3)
        renewal_of = CharField(max_length=64, null=True)
        metadata = TextField(null=True)
        sales_order_id = CharField(max_length=64, null=True)
        sales_order_number = CharField(max_length=64, null=True)
        activation_reference = CharField(max_length=64, null=True)
        starts_at = DateTimeField(null=True)
        expires_at = DateTimeField(null=True)
        error_code = CharField(max_length=64, null=True)
        error_message = TextField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            indexes = ((("partner", "order_id"), True), (("status", "created_at"), False))

    db.create_tables([Partner, ApiKey, Product, Order])


def down(migrator, db):
    for table in ("order", "product", "api_key", "partner"):
        db.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
