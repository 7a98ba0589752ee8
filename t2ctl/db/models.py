"""The domain's tables (partners, catalogue, orders, subscriptions, provisioning, webhooks,
audit), as peewee models bound to the one database handle; the engine keeps its own in
``t2ctl.jobs.models``.

Schema changes are never made from here: each one is a numbered script in ``migrations/``
(``t2ctl db migrate``). These classes must describe the schema the latest migration leaves.
"""

import peewee

from t2ctl.db.base import BaseModel, JSONTextField, UTCDateTimeField

ORDER_STATUSES = ("PENDING", "PROCESSING", "FULFILLED", "FAILED", "CANCELLED")
DELIVERY_STATUSES = ("pending", "delivered", "dead")


class Partner(BaseModel):
    name = peewee.CharField(max_length=64, unique=True)
    webhook_url = peewee.TextField()
    webhook_secret = peewee.TextField()  # Fernet token under the master key
    allowed_ips = JSONTextField(default=list)  # CIDRs; empty means any address
    rate_limit_per_minute = peewee.IntegerField(null=True)  # None: server.rate_limit_per_minute
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()


class ApiKey(BaseModel):
    """A partner's API key, kept only as its SHA-256; several may be valid at once."""

    key_id = peewee.CharField(max_length=32, unique=True)  # public handle, part of the key
    partner = peewee.ForeignKeyField(Partner, backref="api_keys", on_delete="CASCADE")
    partner_id: "peewee.ForeignKeyField[int]"
    key_hash = peewee.CharField(max_length=64, unique=True)
    created_at = UTCDateTimeField()
    expires_at = UTCDateTimeField(null=True)
    revoked_at = UTCDateTimeField(null=True)
    last_used_at = UTCDateTimeField(null=True)


class Product(BaseModel):
    product_id = peewee.CharField(max_length=64, unique=True)
    name = peewee.CharField(max_length=200)
    description = peewee.TextField(default="")
    price_minor = peewee.BigIntegerField()
    currency = peewee.CharField(max_length=3)
    term_months = peewee.IntegerField()
    active = peewee.BooleanField(default=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()


class Subscription(BaseModel):
    """What a customer holds: started by a fulfilled order, extended by each renewal of it.

    Its ``expires_at`` is the one the expiry tasks watch; an order's own dates say what that
    order bought.
    """

    partner = peewee.ForeignKeyField(Partner, backref="subscriptions", on_delete="RESTRICT")
    product = peewee.ForeignKeyField(Product, on_delete="RESTRICT")
    partner_id: "peewee.ForeignKeyField[int]"
    product_id: "peewee.ForeignKeyField[int]"
    customer_id = peewee.CharField(max_length=64)
    starts_at = UTCDateTimeField()
    expires_at = UTCDateTimeField(index=True)
    # The expiry a subscription.expiring / .expired event was recorded for: a renewal moves
    # ``expires_at`` on, and the new expiry is announced again.
    reminded_for = UTCDateTimeField(null=True)
    expired_for = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()


# The subscriptions expiry-check has still to announce (migration 0008): its reads stay
# among those, not every subscription that ever expired.
Subscription.add_index(
    Subscription.index(
        Subscription.expires_at,
        name="subscription_unexpired",
        where=Subscription.expired_for.is_null()
        | (Subscription.expired_for != Subscription.expires_at),
    )
)


class Order(BaseModel):
    """One partner order; (partner, order_id) is unique and is the idempotency key."""

    # No index of their own (migration 0009): (partner, order_id) leads with the partner, and
    # no read looks orders up by product.
    partner = peewee.ForeignKeyField(Partner, backref="orders", on_delete="RESTRICT", index=False)
    partner_id: "peewee.ForeignKeyField[int]"
    order_id = peewee.CharField(max_length=64)
    status = peewee.CharField(max_length=16, default="PENDING")
    product = peewee.ForeignKeyField(Product, on_delete="RESTRICT", index=False)
    product_id: "peewee.ForeignKeyField[int]"
    quantity = peewee.IntegerField()
    customer_id = peewee.CharField(max_length=64)
    customer_name = peewee.CharField(max_length=200)
    customer_email = peewee.TextField()  # Fernet token
    customer_phone = peewee.TextField(null=True)  # Fernet token
    amount_minor = peewee.BigIntegerField()
    currency = peewee.CharField(max_length=3)
    renewal_of = peewee.CharField(max_length=64, null=True)
    metadata = JSONTextField(null=True)
    sales_order_id = peewee.CharField(max_length=64, null=True)
    sales_order_number = peewee.CharField(max_length=64, null=True)
    activation_reference = peewee.CharField(max_length=64, null=True)
    starts_at = UTCDateTimeField(null=True)
    expires_at = UTCDateTimeField(null=True)
    subscription = peewee.ForeignKeyField(
        Subscription, null=True, backref="orders", on_delete="RESTRICT", index=False
    )  # indexed where set, below
    subscription_id: "peewee.ForeignKeyField[int | None]"
    error_code = peewee.CharField(max_length=64, null=True)
    error_message = peewee.TextField(null=True)
    fulfilled_at = UTCDateTimeField(null=True)  # the cancellation window counts from it
    # A cancellation asked for (reason, when) and, once the order is CANCELLED, done.
    cancel_reason = peewee.TextField(null=True)
    cancel_requested_at = UTCDateTimeField(null=True)
    cancelled_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()

    class Meta:
        indexes = (
            (("partner", "order_id"), True),
            (("status", "created_at", "id"), False),
            # The partner's listing, newest first, whole or by status; its renewals.
            (("partner", "created_at", "id"), False),
            (("partner", "status", "created_at", "id"), False),
            # Operators' reads: every order newest first (whole, or by status just above).
            (("created_at", "id"), False),
        )


# Indexes of a column null until there is something to index hold only the rows where it is
# set (migration 0009): a subscription's orders, an order's renewals, and for a settlement
# report each partner's orders fulfilled, and cancelled, in a period.
for _columns in (
    (Order.subscription,),
    (Order.partner, Order.renewal_of),
    (Order.partner, Order.fulfilled_at),
    (Order.partner, Order.cancelled_at),
):
    Order.add_index(Order.index(*_columns, where=_columns[-1].is_null(False)))

# The orders failed since a moment, for t2ctl status (migration 0008): FAILED ones only. A
# query reaches it by naming the status as a literal (``records.FAILED``), not a parameter.
Order.add_index(
    Order.index(
        Order.status,
        Order.updated_at,
        name="order_failed_updated_at",
        where=Order.status == "FAILED",
    )
)


class SandboxSalesOrder(BaseModel):
    """Sales orders of the sandbox provisioner: the stand-in for Zoho's, never unique by
    reference, so that a second sales order for one order would show."""

    partner = peewee.IntegerField(null=True)  # null for rows from before migration 0003
    reference_number = peewee.CharField(max_length=64, index=True)
    created_at = UTCDateTimeField(index=True)
    voided_at = UTCDateTimeField(null=True)
    total_minor = peewee.BigIntegerField(null=True)  # null for rows from before migration 0007
    currency = peewee.CharField(max_length=3, null=True)


class ZohoToken(BaseModel):
    """The access token every daemon shares, one row per OAuth client; whoever holds
    ``refresh_lease_until`` is the one process minting the next, within the budget that
    ``mints`` counts."""

    client = peewee.CharField(max_length=300, unique=True)  # accounts URL + client id
    access_token = peewee.TextField(null=True)  # Fernet token under the master key
    api_domain = peewee.TextField(null=True)
    expires_at = UTCDateTimeField(null=True)
    refreshed_at = UTCDateTimeField(null=True)
    refresh_lease_until = UTCDateTimeField(null=True)
    mints = JSONTextField(default=list)  # when each recent mint was attempted (ISO 8601)
    last_error = peewee.TextField(null=True)


class RateSlot(BaseModel):
    """A shared pace: the next moment a call under ``name`` may be made, fleet-wide."""

    name = peewee.CharField(max_length=200, unique=True)
    next_at = UTCDateTimeField()


class ZohoContact(BaseModel):
    """Zoho contact ids by customer email, kept as a keyed digest, never the address."""

    organization_id = peewee.CharField(max_length=64)
    email_digest = peewee.CharField(max_length=64)
    contact_id = peewee.CharField(max_length=64)
    created_at = UTCDateTimeField()

    class Meta:
        indexes = ((("organization_id", "email_digest"), True),)


class ZohoItem(BaseModel):
    """Zoho item ids by sku (our productId), filled by `products sync` and by look-ups."""

    organization_id = peewee.CharField(max_length=64)
    sku = peewee.CharField(max_length=64)
    item_id = peewee.CharField(max_length=64)
    updated_at = UTCDateTimeField()

    class Meta:
        indexes = ((("organization_id", "sku"), True),)


class ZohoSalesOrder(BaseModel):
    """How far provisioning got with one order's sales order: ``creating`` is written before
    the create call, so a row in that state is the one case where Zoho must be asked. The
    ``attempt`` that wrote it owns it until ``deadline``, when its call has surely ended."""

    organization_id = peewee.CharField(max_length=64)
    partner = peewee.IntegerField()
    reference_number = peewee.CharField(max_length=64)
    state = peewee.CharField(max_length=16)  # creating, draft, confirmed
    attempt = peewee.CharField(max_length=32, null=True)
    contact_id = peewee.CharField(max_length=64, null=True)  # the create was sent with it
    deadline = UTCDateTimeField(null=True)
    salesorder_id = peewee.CharField(max_length=64, null=True)
    salesorder_number = peewee.CharField(max_length=64, null=True)
    updated_at = UTCDateTimeField()

    class Meta:
        indexes = ((("organization_id", "partner", "reference_number"), True),)


class RetiredWebhookSecret(BaseModel):
    """A partner's previous webhook secret, still signing beside the current one (on
    ``Partner``) until ``signs_until``: the grace of a rotation."""

    partner = peewee.ForeignKeyField(Partner, backref="retired_secrets", on_delete="CASCADE")
    partner_id: "peewee.ForeignKeyField[int]"
    secret = peewee.TextField()  # Fernet token under the master key
    retired_at = UTCDateTimeField()
    signs_until = UTCDateTimeField()


class WebhookDelivery(BaseModel):
    """One event for one partner, in the outbox: written in the commit that caused it, sent
    by the ``deliver`` job until a 2xx (delivered) or the last attempt (dead). ``body`` is the
    exact text signed and sent on every try, under the same ``webhook_id``."""

    id = peewee.BigAutoField()
    webhook_id = peewee.CharField(max_length=64, unique=True)
    partner = peewee.ForeignKeyField(Partner, backref="deliveries", on_delete="RESTRICT")
    partner_id: "peewee.ForeignKeyField[int]"
    event = peewee.CharField(max_length=64)
    order_ref = peewee.CharField(max_length=64, null=True)  # the partner's orderId
    body = peewee.TextField()
    feed_seq = peewee.BigIntegerField(null=True)  # its place in the partner's event feed
    status = peewee.CharField(max_length=16, default="pending")
    attempts = peewee.IntegerField(default=0)  # every try, ever
    failures = peewee.IntegerField(default=0)  # failed tries since last (re)sent: the step
    next_attempt_at = UTCDateTimeField(null=True)
    last_status = peewee.IntegerField(null=True)
    last_error = peewee.TextField(null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()
    finished_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = (
            (("status", "created_at"), False),
            (("partner", "created_at"), False),
            # The partner's event feed, in feed order, whole or by type.
            (("partner", "feed_seq"), False),
            (("partner", "event", "feed_seq"), False),
        )


# The events a feed read has still to place (migration 0006): few at any time, in id order.
WebhookDelivery.add_index(
    WebhookDelivery.index(
        WebhookDelivery.partner,
        WebhookDelivery.id,
        name="webhook_delivery_unplaced",
        where=WebhookDelivery.feed_seq.is_null(),
    )
)


class WebhookAttempt(BaseModel):
    """One try of a delivery: what was sent where, and what came back."""

    id = peewee.BigAutoField()
    delivery = peewee.ForeignKeyField(WebhookDelivery, backref="tries", on_delete="CASCADE")
    delivery_id: "peewee.ForeignKeyField[int]"
    attempted_at = UTCDateTimeField(index=True)
    trigger = peewee.CharField(max_length=16)  # scheduled or manual
    url = peewee.TextField()
    status_code = peewee.IntegerField(null=True)
    latency_ms = peewee.IntegerField(null=True)
    outcome = peewee.CharField(max_length=16)  # delivered, failed, refused, gone
    error = peewee.TextField(null=True)
    excerpt = peewee.TextField(null=True)


class AuditEvent(BaseModel):
    """One state-changing CLI action: who (the OS user, and the login behind sudo), where,
    what and when. ``details`` names ids and counts, never a secret."""

    id = peewee.BigAutoField()
    at = UTCDateTimeField(index=True)
    os_user = peewee.CharField(max_length=64)
    login_user = peewee.CharField(max_length=64, null=True)  # who ran sudo, when it differs
    host = peewee.CharField(max_length=255)
    action = peewee.CharField(max_length=64, index=True)  # command, like keys.rotate
    target = peewee.CharField(max_length=255)
    details = JSONTextField(default=dict)


class Reconciliation(BaseModel):
    """One finished run of ``reconcile``: its window, what it checked, how many Zoho calls it
    made, and the drift it found (``counts`` by kind; ``drift`` the first ``DRIFT_KEPT``)."""

    id = peewee.BigAutoField()
    started_at = UTCDateTimeField()
    finished_at = UTCDateTimeField(index=True)
    since = UTCDateTimeField()
    until = UTCDateTimeField()
    source = peewee.CharField(max_length=16)  # cli, or schedule
    routine = peewee.BooleanField()  # the default window, up to the run: it feeds the gauge
    checked = peewee.IntegerField()
    calls = peewee.IntegerField()
    counts = JSONTextField(default=dict)
    drift = JSONTextField(default=list)


MODELS = [
    Partner,
    ApiKey,
    Product,
    Subscription,
    Order,
    SandboxSalesOrder,
    ZohoToken,
    RateSlot,
    ZohoContact,
    ZohoItem,
    ZohoSalesOrder,
    RetiredWebhookSecret,
    WebhookDelivery,
    WebhookAttempt,
    AuditEvent,
    Reconciliation,
]
