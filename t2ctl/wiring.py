"""The one place that picks implementations from settings: the provisioner, the handlers a
worker can run, and the periodic tasks. The daemon and the CLI both build from here."""

from datetime import timedelta

from t2ctl import clock
from t2ctl.config import Settings
from t2ctl.jobs import queue, tasks
from t2ctl.jobs.scheduler import Periodic, Scheduler
from t2ctl.orders import expiry, processing
from t2ctl.provisioning import Provisioner
from t2ctl.provisioning.sandbox import SandboxProvisioner
from t2ctl.provisioning.zoho.client import Client
from t2ctl.provisioning.zoho.oauth import Credentials, TokenCache
from t2ctl.provisioning.zoho.pace import Pacer
from t2ctl.provisioning.zoho.provisioner import ZohoProvisioner
from t2ctl.security.crypto import SecretBox
from t2ctl.webhooks import deliveries, delivery


def zoho_client(
    settings: Settings, box: SecretBox, *, per: timedelta = timedelta(minutes=1)
) -> Client:
    """The Zoho Inventory client of these settings: ``zoho.requests_per_minute`` calls per
    ``per`` (a minute, unless a test compresses time), shared by the fleet."""
    zoho = settings.zoho
    tokens = TokenCache(
        Credentials(
            accounts_url=zoho.accounts_url,
            client_id=zoho.client_id,
            client_secret=zoho.client_secret.get_secret_value(),
            refresh_token=zoho.refresh_token.get_secret_value(),
        ),
        box=box,
        timeout=zoho.timeout_seconds,
    )
    pacer = Pacer(f"zoho:{zoho.organization_id}", calls=zoho.requests_per_minute, per=per)
    return Client(
        api_url=zoho.api_url,
        organization_id=zoho.organization_id,
        tokens=tokens,
        pacer=pacer,
        timeout=zoho.timeout_seconds,
    )


def zoho_provisioner(settings: Settings, client: Client) -> ZohoProvisioner:
    # The client secret keys the contact cache's email digests: it never enters the database.
    return ZohoProvisioner(
        client, digest_key=settings.zoho.client_secret.get_secret_value().encode()
    )


def settings_provisioner(settings: Settings, box: SecretBox) -> Provisioner:
    if settings.sandbox_mode:
        return SandboxProvisioner(
            delay=settings.sandbox.provision_delay,
            decline=frozenset(settings.sandbox.decline_products),
        )
    return zoho_provisioner(settings, zoho_client(settings, box))


def scheduler(settings: Settings) -> Scheduler:
    """The periodic tasks of CONTRACT §3, at their configured times in schedule.timezone."""
    plan = settings.schedule
    retention = settings.worker.job_retention
    attempts_kept = timedelta(days=settings.webhooks.retention_days)

    def prune(as_of):
        jobs = queue.prune(before=as_of - retention)
        tries = deliveries.prune_attempts(before=as_of - attempts_kept)
        return (
            f"{jobs} finished job(s) older than {clock.rfc3339(as_of - retention)} and "
            f"{tries} webhook attempt(s) older than {clock.rfc3339(as_of - attempts_kept)} pruned"
        )

    return Scheduler(
        [
            Periodic(
                "expiry-reminders",
                lambda as_of: expiry.reminders(as_of, days=plan.reminder_days),
                "day",
                plan.expiry_reminders_at,
            ),
            Periodic("expiry-check", expiry.check, "day", plan.expiry_check_at),
            Periodic("prune", prune, "hour", ":30"),
        ],
        timezone=plan.timezone,
    )


def registry(
    settings: Settings,
    *,
    box: SecretBox,
    schedule: Scheduler,
    provisioner: Provisioner | None = None,
) -> tasks.Registry:
    """Every handler a worker of this daemon runs; ``provisioner`` defaults to the settings'."""
    built = tasks.Registry()
    processing.register(
        built,
        provisioner=provisioner or settings_provisioner(settings, box),
        box=box,
        retry_for=settings.zoho.retry_for,
    )
    delivery.register(built, settings, box=box)
    schedule.register(built)
    return built
